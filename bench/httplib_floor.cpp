// The floor under execd's idle RSS: a program that does nothing but link Debian's
// compiled cpp-httplib (and so libssl, libcrypto, libstdc++ and brotli, with the OpenSSL
// initialisation the library runs when it is loaded) and wait. bench_http.sh measures its
// RSS beside execd's in the same run.
#include <unistd.h>

#include <httplib.h>

int main() {
  httplib::Server server;  // one use, so the library is really linked
  char byte = 0;
  return static_cast<int>(::read(0, &byte, 1));  // until the bench closes stdin
}
