// Debian's compiled cpp-httplib runs OPENSSL_init_ssl(LOAD_SSL_STRINGS | LOAD_CRYPTO_STRINGS)
// from a static constructor when it is loaded, for the TLS it can serve. Neither program
// serves or speaks TLS through httplib, and that call alone makes 1.9 MiB of libssl and
// libcrypto resident in an idle daemon (measured: a C program linking both, 3.3 MiB RSS
// without the call, 5.2 MiB with it). The executable's definition below interposes the
// library's: calls made before main() are skipped; every later one goes to OpenSSL's own,
// so anything that does use TLS initialises as usual (OpenSSL 3 also initialises itself
// on first use). Only the programs link this file, never libexecd.
#include <openssl/ssl.h>

#include <atomic>

#include "core/lazy_library.hpp"
#include "deferred_openssl_init.hpp"

namespace {

std::atomic<bool> g_forwarding{false};  // process-wide by nature: it decides for a C hook
execd::core::LazyLibrary g_libssl("libssl.so.3");

}  // namespace

namespace execd {

void begin_openssl_init_forwarding() { g_forwarding.store(true); }

}  // namespace execd

extern "C" int OPENSSL_init_ssl(uint64_t opts, const OPENSSL_INIT_SETTINGS* settings) {
  if (!g_forwarding.load()) return 1;
  static const auto real = reinterpret_cast<decltype(&::OPENSSL_init_ssl)>(g_libssl.symbol("OPENSSL_init_ssl"));
  return real != nullptr ? real(opts, settings) : 0;
}
