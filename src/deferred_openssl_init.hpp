#pragma once

namespace execd {

/// From now on OPENSSL_init_ssl calls reach OpenSSL (deferred_openssl_init.cpp skips the
/// one Debian's cpp-httplib makes while loading). main() calls it first thing.
void begin_openssl_init_forwarding();

}  // namespace execd
