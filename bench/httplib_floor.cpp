// The floor under execd's idle RSS: a program that does nothing but link Debian's
// compiled cpp-httplib (and so libssl, libcrypto, libstdc++ and brotli) and wait. It
// skips the OpenSSL initialisation the library runs when loaded, as execd does
// (src/deferred_openssl_init.cpp), so the two differ only by what execd itself does.
// bench_http.sh measures its RSS beside execd's in the same run.
#include <unistd.h>

#include <httplib.h>

#include "deferred_openssl_init.hpp"

int main() {
  execd::begin_openssl_init_forwarding();
  httplib::Server server;  // one use, so the library is really linked
  char byte = 0;
  return static_cast<int>(::read(0, &byte, 1));  // until the bench closes stdin
}
