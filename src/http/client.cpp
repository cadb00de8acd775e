#include "http/client.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace execd::http {

namespace {

using Clock = std::chrono::steady_clock;

core::Error fail(const ClientEndpoint& ep, const std::string& what) {
  const std::string where = ep.unix_path.empty() ? ep.host + ":" + std::to_string(ep.port) : "unix:" + ep.unix_path;
  return core::make_error(core::Errc::unavailable, where + ": " + what);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

/// Waits for `events` until the deadline: true when ready.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

core::Result<core::UniqueFd> connect_to(const ClientEndpoint& ep, Clock::time_point deadline) {
  auto try_connect = [&](int family, int type, int proto, const sockaddr* addr, socklen_t len) -> core::Result<core::UniqueFd> {
    core::UniqueFd fd(::socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, proto));
    if (!fd.valid()) return fail(ep, std::string("socket: ") + std::strerror(errno));
    if (::connect(fd.get(), addr, len) != 0) {
      if (errno != EINPROGRESS && errno != EAGAIN) return fail(ep, std::string("connect: ") + std::strerror(errno));
      if (!wait_for(fd.get(), POLLOUT, deadline)) return fail(ep, "connect: timed out");
      int err = 0;
      socklen_t err_len = sizeof err;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
      if (err != 0) return fail(ep, std::string("connect: ") + std::strerror(err));
    }
    if (family != AF_UNIX) {
      const int one = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
  };
  if (!ep.unix_path.empty()) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (ep.unix_path.size() >= sizeof addr.sun_path) return fail(ep, "socket path too long");
    std::memcpy(addr.sun_path, ep.unix_path.data(), ep.unix_path.size());
    return try_connect(AF_UNIX, SOCK_STREAM, 0, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(ep.port);
  if (const int r = ::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &found); r != 0) {
    return fail(ep, std::string("resolving: ") + ::gai_strerror(r));
  }
  core::Result<core::UniqueFd> last = fail(ep, "no address");
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    last = try_connect(a->ai_family, a->ai_socktype, a->ai_protocol, a->ai_addr, a->ai_addrlen);
    if (last) break;
  }
  ::freeaddrinfo(found);
  return last;
}

/// Buffered reads from a non-blocking socket, each bounded by the exchange's deadline.
class Reader {
 public:
  Reader(int fd, Clock::time_point deadline) : fd_(fd), deadline_(deadline) {}

  /// Appends what arrives to buf_; false on end of stream, error or deadline.
  bool fill() {
    char chunk[16384];
    for (;;) {
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        buf_.append(chunk, static_cast<size_t>(n));
        return true;
      }
      if (n == 0) {
        eof_ = true;
        return false;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      if (!wait_for(fd_, POLLIN, deadline_)) {
        timed_out_ = true;
        return false;
      }
    }
  }
  /// A line ending in CRLF (without it); false when none arrives within `max`.
  bool line(std::string& out, size_t max) {
    for (;;) {
      if (const auto pos = buf_.find("\r\n", pos_); pos != std::string::npos) {
        out.assign(buf_, pos_, pos - pos_);
        pos_ = pos + 2;
        return true;
      }
      if (buf_.size() - pos_ > max || !fill()) return false;
    }
  }
  /// Exactly `n` bytes appended to `out`.
  bool bytes(size_t n, std::string& out) {
    while (buf_.size() - pos_ < n) {
      if (!fill()) return false;
    }
    out.append(buf_, pos_, n);
    pos_ += n;
    compact();
    return true;
  }
  /// Everything until the peer closes, at most `max` bytes (false past it).
  bool rest(std::string& out, uint64_t max) {
    for (;;) {
      out.append(buf_, pos_, std::string::npos);
      buf_.clear();
      pos_ = 0;
      if (out.size() > max) return false;
      if (!fill()) return eof_;
    }
  }
  [[nodiscard]] bool timed_out() const { return timed_out_; }

 private:
  void compact() {
    if (pos_ > 65536) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
  }
  int fd_;
  Clock::time_point deadline_;
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
  bool timed_out_ = false;
};

bool send_all(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd, POLLOUT, deadline)) return false;
      continue;
    }
    return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool has_header(const ClientHeaders& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return true;
  }
  return false;
}

}  // namespace

core::Result<ClientEndpoint> ClientEndpoint::parse(std::string_view text) {
  ClientEndpoint ep;
  if (text.rfind("unix://", 0) == 0) {
    ep.unix_path = std::string(text.substr(7));
    if (ep.unix_path.empty() || ep.unix_path.front() != '/') {
      return core::make_error(core::Errc::invalid_argument, "a unix endpoint needs an absolute path: " + std::string(text));
    }
    return ep;
  }
  if (text.rfind("http://", 0) == 0) text.remove_prefix(7);
  if (const auto slash = text.find('/'); slash != std::string_view::npos) text = text.substr(0, slash);
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return core::make_error(core::Errc::invalid_argument, "an endpoint needs host:port: " + std::string(text));
  }
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const auto port_text = text.substr(colon + 1);
  int port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535) {
    return core::make_error(core::Errc::invalid_argument, "bad port in endpoint: " + std::string(text));
  }
  ep.host = std::string(host);
  ep.port = port;
  return ep;
}

std::string ClientResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return {};
}

core::Result<ClientResponse> send_request(const ClientEndpoint& endpoint, const ClientRequest& request) {
  const auto deadline = Clock::now() + request.timeout;
  auto fd = connect_to(endpoint, deadline);
  if (!fd) return fd.error();

  std::string head = request.method + " " + request.target + " HTTP/1.1\r\n";
  if (!has_header(request.headers, "Host")) {
    head += "Host: " + (endpoint.unix_path.empty() ? endpoint.host + ":" + std::to_string(endpoint.port) : std::string("localhost")) + "\r\n";
  }
  if (!has_header(request.headers, "Content-Length") &&
      (!request.body.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH")) {
    head += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
  }
  for (const auto& [k, v] : request.headers) head += k + ": " + v + "\r\n";
  head += "Connection: close\r\n\r\n";
  if (!send_all(fd->get(), head, deadline) || !send_all(fd->get(), request.body, deadline)) {
    return fail(endpoint, "sending the request failed or timed out");
  }

  Reader in(fd->get(), deadline);
  auto broken = [&](const std::string& what) {
    return fail(endpoint, in.timed_out() ? what + ": timed out" : what);
  };
  ClientResponse res;
  std::string line;
  constexpr size_t kMaxLine = 64 * 1024;
  // 1xx answers (100 Continue) come before the real one.
  do {
    if (!in.line(line, kMaxLine)) return broken("reading the status line");
    if (line.size() < 12 || line.compare(0, 5, "HTTP/") != 0) return fail(endpoint, "not an HTTP response: " + line.substr(0, 80));
    const auto sp = line.find(' ');
    res.status = 0;
    std::from_chars(line.data() + sp + 1, line.data() + line.size(), res.status);
    if (res.status < 100 || res.status > 999) return fail(endpoint, "bad status line: " + line.substr(0, 80));
    res.headers.clear();
    for (;;) {
      if (!in.line(line, kMaxLine)) return broken("reading the response headers");
      if (line.empty()) break;
      const auto colon = line.find(':');
      if (colon == std::string::npos) return fail(endpoint, "bad header line: " + line.substr(0, 80));
      res.headers.emplace_back(line.substr(0, colon), std::string(trim(std::string_view(line).substr(colon + 1))));
      if (res.headers.size() > 1000) return fail(endpoint, "too many response headers");
    }
  } while (res.status < 200);

  const bool no_body = request.method == "HEAD" || res.status == 204 || res.status == 304;
  if (no_body) return res;
  if (iequals(res.header("Transfer-Encoding"), "chunked")) {
    for (;;) {
      if (!in.line(line, kMaxLine)) return broken("reading a chunk size");
      uint64_t size = 0;
      const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
      if (ec != std::errc() || end == line.data()) return fail(endpoint, "bad chunk size: " + line.substr(0, 40));
      if (size == 0) {
        // Trailers, then the blank line.
        do {
          if (!in.line(line, kMaxLine)) return broken("reading trailers");
        } while (!line.empty());
        return res;
      }
      if (res.body.size() + size > request.max_response_bytes) return fail(endpoint, "response body over the limit");
      if (!in.bytes(size, res.body) || !in.line(line, 2) || !line.empty()) return broken("reading a chunk");
    }
  }
  if (const auto length = res.header("Content-Length"); !length.empty()) {
    uint64_t size = 0;
    const auto [end, ec] = std::from_chars(length.data(), length.data() + length.size(), size);
    if (ec != std::errc() || end != length.data() + length.size()) return fail(endpoint, "bad Content-Length: " + length);
    if (size > request.max_response_bytes) return fail(endpoint, "response body over the limit");
    if (!in.bytes(size, res.body)) return broken("reading the response body");
    return res;
  }
  if (!in.rest(res.body, request.max_response_bytes)) return broken("reading the response body");
  return res;
}

}  // namespace execd::http
