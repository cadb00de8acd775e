#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

// OpenSSL stays out of this header (STYLE.md): its types are only named here.
struct ssl_ctx_st;
struct ssl_st;

namespace execd::http {

/// What an HTTPS client trusts and, optionally, presents: the sources a kubeconfig or a
/// service account gives (a CA file, or PEM text; a client certificate and key as PEM).
struct TlsOptions {
  std::string ca_file = {};   ///< PEM file of the CAs that may sign the server's certificate
  std::string ca_pem = {};    ///< or the same as PEM text (kubeconfig certificate-authority-data)
  std::string cert_pem = {};  ///< client certificate (PEM); empty: none presented
  std::string key_pem = {};   ///< its private key (PEM)
};

/// An OpenSSL client context built once from TlsOptions: TLS 1.2 or later, the server's
/// chain verified against exactly the given CAs (never the system store, so a cluster's
/// private CA is the only one trusted). Immutable after create(); shared by every
/// connection to the same server, from any thread.
class TlsContext {
 public:
  /// invalid_argument naming what is wrong: no CA given, an unreadable CA file, PEM
  /// that does not parse, a key that does not match its certificate.
  static core::Result<std::shared_ptr<const TlsContext>> create(const TlsOptions& options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  [[nodiscard]] ssl_ctx_st* native() const { return ctx_; }

 private:
  explicit TlsContext(ssl_ctx_st* ctx) : ctx_(ctx) {}
  ssl_ctx_st* ctx_;
};

/// One TLS connection over a connected non-blocking socket (it does not own the fd).
/// connect() runs the handshake and checks the server's certificate names `server_name`
/// (a DNS name, or an IP address matched against the certificate's IP SANs). One thread
/// at a time; every call takes a deadline.
class TlsSession {
 public:
  using Clock = std::chrono::steady_clock;

  /// unavailable with OpenSSL's reason (`certificate verify failed: ...`, a timeout).
  static core::Result<std::unique_ptr<TlsSession>> connect(const TlsContext& context, int fd,
                                                           const std::string& server_name, Clock::time_point deadline);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  /// Bytes read (> 0), 0 when the peer closed the stream, -1 on error or at the deadline
  /// (then error() says which and timed_out() is set).
  long read(char* out, size_t size, Clock::time_point deadline);
  /// Writes everything or fails (unavailable, with the reason).
  core::Result<void> write(std::string_view data, Clock::time_point deadline);

  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] bool timed_out() const { return timed_out_; }

 private:
  TlsSession(ssl_st* ssl, int fd) : ssl_(ssl), fd_(fd) {}
  /// Waits for what OpenSSL asked for after a WANT_READ / WANT_WRITE; false at the deadline.
  bool wait(int ssl_error, Clock::time_point deadline);

  ssl_st* ssl_;
  int fd_;
  std::string error_;
  bool timed_out_ = false;
};

}  // namespace execd::http
