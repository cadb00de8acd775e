#include "http/tls_client.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <memory>

#include "http/upstream_connection.hpp"

namespace execd::http {
namespace {

using core::Errc;
using core::make_error;

// The newest queued OpenSSL error as text, the queue emptied (it is per thread: a stale
// entry would be blamed on the next call).
std::string openssl_reason() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out = buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr memory_bio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

core::Result<void> add_ca_pem(SSL_CTX* ctx, const std::string& pem) {
  auto bio = memory_bio(pem);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    const int ok = X509_STORE_add_cert(store, cert);
    X509_free(cert);
    if (ok != 1) return make_error(Errc::invalid_argument, "CA certificate: " + openssl_reason());
    ++added;
  }
  ERR_clear_error();  // the read that ended the loop queued "no start line"
  if (added == 0) return make_error(Errc::invalid_argument, "CA data holds no PEM certificate");
  return {};
}

core::Result<void> use_client_identity(SSL_CTX* ctx, const std::string& cert_pem, const std::string& key_pem) {
  auto cert_bio = memory_bio(cert_pem);
  X509* cert = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr);
  if (cert == nullptr) return make_error(Errc::invalid_argument, "client certificate: " + openssl_reason());
  const int used = SSL_CTX_use_certificate(ctx, cert);
  X509_free(cert);
  if (used != 1) return make_error(Errc::invalid_argument, "client certificate: " + openssl_reason());
  auto key_bio = memory_bio(key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) return make_error(Errc::invalid_argument, "client key: " + openssl_reason());
  const int key_used = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (key_used != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return make_error(Errc::invalid_argument, "client key does not match the certificate: " + openssl_reason());
  }
  return {};
}

bool is_ip_address(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

core::Result<std::shared_ptr<const TlsContext>> TlsContext::create(const TlsOptions& options) {
  if (options.ca_file.empty() && options.ca_pem.empty()) {
    return make_error(Errc::invalid_argument, "TLS: no CA to verify the server with (a CA file or PEM data)");
  }
  if (options.cert_pem.empty() != options.key_pem.empty()) {
    return make_error(Errc::invalid_argument, "TLS: a client certificate needs its key, and a key its certificate");
  }
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return make_error(Errc::internal, "TLS: " + openssl_reason());
  std::shared_ptr<const TlsContext> out(new TlsContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  // Partial writes: write() resumes from where OpenSSL stopped with the same buffer.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!options.ca_file.empty() && SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1) {
    return make_error(Errc::invalid_argument,
                      "TLS: cannot load the CA file " + options.ca_file + ": " + openssl_reason());
  }
  if (!options.ca_pem.empty()) {
    if (auto r = add_ca_pem(ctx, options.ca_pem); !r)
      return make_error(Errc::invalid_argument, "TLS: " + r.error().message);
  }
  if (!options.cert_pem.empty()) {
    if (auto r = use_client_identity(ctx, options.cert_pem, options.key_pem); !r) {
      return make_error(Errc::invalid_argument, "TLS: " + r.error().message);
    }
  }
  return out;
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);
}

core::Result<std::unique_ptr<TlsSession>> TlsSession::connect(const TlsContext& context, int fd,
                                                              const std::string& server_name,
                                                              Clock::time_point deadline) {
  ERR_clear_error();
  SSL* ssl = SSL_new(context.native());
  if (ssl == nullptr) return make_error(Errc::internal, "TLS: " + openssl_reason());
  std::unique_ptr<TlsSession> session(new TlsSession(ssl, fd));
  SSL_set_fd(ssl, fd);
  if (is_ip_address(server_name)) {
    // RFC 6066 forbids an address in SNI; the certificate must carry it as an IP SAN.
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str()) != 1) {
      return make_error(Errc::invalid_argument, "TLS: bad server address " + server_name);
    }
  } else {
    SSL_set_tlsext_host_name(ssl, server_name.c_str());
    if (SSL_set1_host(ssl, server_name.c_str()) != 1) {
      return make_error(Errc::invalid_argument, "TLS: bad server name " + server_name);
    }
  }
  for (;;) {
    const int r = SSL_connect(ssl);
    if (r == 1) return session;
    const int err = SSL_get_error(ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!session->wait(err, deadline))
        return make_error(Errc::unavailable, "TLS handshake with " + server_name + ": timed out");
      continue;
    }
    std::string why = openssl_reason();
    if (const long verify = SSL_get_verify_result(ssl); verify != X509_V_OK) {
      why += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
    }
    return make_error(Errc::unavailable, "TLS handshake with " + server_name + ": " + why);
  }
}

TlsSession::~TlsSession() {
  // No close_notify round trip: every exchange is framed by HTTP, and the socket closes next.
  SSL_free(ssl_);
}

bool TlsSession::wait(int ssl_error, Clock::time_point deadline) {
  return wait_for_fd(fd_, ssl_error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, deadline);
}

long TlsSession::read(char* out, size_t size, Clock::time_point deadline) {
  ERR_clear_error();
  for (;;) {
    size_t n = 0;
    const int r = SSL_read_ex(ssl_, out, size, &n);
    if (r == 1) return static_cast<long>(n);
    const int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait(err, deadline)) {
        timed_out_ = true;
        error_ = "timed out";
        return -1;
      }
      continue;
    }
    // A peer that closes without close_notify: for HTTP framed by length or chunks the
    // caller sees a cut body; for close-delimited bodies this is the end (RFC 9112 9.8
    // leaves it to the client), as plain TCP's EOF is.
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return 0;
    if (err == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ERR_clear_error();
      return 0;
    }
    error_ = "TLS: " + openssl_reason();
    return -1;
  }
}

core::Result<void> TlsSession::write(std::string_view data, Clock::time_point deadline) {
  ERR_clear_error();
  while (!data.empty()) {
    size_t n = 0;
    const int r = SSL_write_ex(ssl_, data.data(), data.size(), &n);
    if (r == 1) {
      data.remove_prefix(n);
      continue;
    }
    const int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait(err, deadline)) return make_error(Errc::unavailable, "TLS write: timed out");
      continue;
    }
    return make_error(Errc::unavailable, "TLS write: " + openssl_reason());
  }
  return {};
}

}  // namespace execd::http
