#include "http/upstream_connection.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace execd::http {
namespace {

using Clock = UpstreamConnection::Clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(std::min<long long>(left, 1 << 30)) : 0;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string where_of(const ClientEndpoint& ep) {
  return ep.unix_path.empty() ? ep.host + ":" + std::to_string(ep.port) : "unix:" + ep.unix_path;
}

core::Error fail_at(const ClientEndpoint& ep, const std::string& what) {
  return core::make_error(core::Errc::unavailable, where_of(ep) + ": " + what);
}

core::Result<core::UniqueFd> connect_to(const ClientEndpoint& ep, Clock::time_point deadline) {
  auto try_connect = [&](int family, int type, int proto, const sockaddr* addr,
                         socklen_t len) -> core::Result<core::UniqueFd> {
    core::UniqueFd fd(::socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, proto));
    if (!fd.valid()) return fail_at(ep, std::string("socket: ") + std::strerror(errno));
    if (::connect(fd.get(), addr, len) != 0) {
      if (errno != EINPROGRESS && errno != EAGAIN) return fail_at(ep, std::string("connect: ") + std::strerror(errno));
      if (!wait_for_fd(fd.get(), POLLOUT, deadline)) return fail_at(ep, "connect: timed out");
      int err = 0;
      socklen_t err_len = sizeof err;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
      if (err != 0) return fail_at(ep, std::string("connect: ") + std::strerror(err));
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
    if (ep.unix_path.size() >= sizeof addr.sun_path) return fail_at(ep, "socket path too long");
    std::memcpy(addr.sun_path, ep.unix_path.data(), ep.unix_path.size());
    return try_connect(AF_UNIX, SOCK_STREAM, 0, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  }
  // A numeric address (the usual upstream: a sandbox on loopback) skips the resolver.
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, ep.host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(static_cast<uint16_t>(ep.port));
    return try_connect(AF_INET, SOCK_STREAM, 0, reinterpret_cast<const sockaddr*>(&v4), sizeof v4);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(ep.port);
  if (const int r = ::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &found); r != 0) {
    return fail_at(ep, std::string("resolving: ") + ::gai_strerror(r));
  }
  core::Result<core::UniqueFd> last = fail_at(ep, "no address");
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    last = try_connect(a->ai_family, a->ai_socktype, a->ai_protocol, a->ai_addr, a->ai_addrlen);
    if (last) break;
  }
  ::freeaddrinfo(found);
  return last;
}

}  // namespace

bool wait_for_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

std::string ResponseHead::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return {};
}

UpstreamConnection::UpstreamConnection(ClientEndpoint endpoint, core::UniqueFd fd, std::unique_ptr<TlsSession> tls)
    : endpoint_(std::move(endpoint)), fd_(std::move(fd)), tls_(std::move(tls)), buffer_(new char[kBufferSize]) {}

core::Result<UpstreamConnection> UpstreamConnection::open(const ClientEndpoint& endpoint, Clock::time_point deadline) {
  auto fd = connect_to(endpoint, deadline);
  if (!fd) return fd.error();
  std::unique_ptr<TlsSession> tls;
  if (endpoint.tls) {
    if (!endpoint.unix_path.empty()) return fail_at(endpoint, "TLS over a unix socket is not supported");
    auto session = TlsSession::connect(*endpoint.tls, fd->get(),
                                       endpoint.tls_server_name.empty() ? endpoint.host : endpoint.tls_server_name, deadline);
    if (!session) return fail_at(endpoint, session.error().message);
    tls = std::move(*session);
  }
  return UpstreamConnection(endpoint, std::move(*fd), std::move(tls));
}

std::string UpstreamConnection::where() const {
  return where_of(endpoint_);
}

std::string UpstreamConnection::where_of(const ClientEndpoint& endpoint) {
  return http::where_of(endpoint);
}

core::Error UpstreamConnection::fail(const std::string& what) const {
  return fail_at(endpoint_, what);
}

core::Error UpstreamConnection::broken(const char* what) const {
  if (timed_out_) return fail(std::string(what) + ": timed out");
  if (eof_) return fail(std::string(what) + ": connection closed by the upstream");
  if (error_ != 0) return fail(std::string(what) + ": " + std::strerror(error_));
  if (!tls_error_.empty()) return fail(std::string(what) + ": " + tls_error_);
  return fail(what);
}

core::Result<void> UpstreamConnection::send(std::string_view data, Clock::time_point deadline) {
  if (tls_) {
    if (auto sent = tls_->write(data, deadline); !sent) return fail("sending the request: " + sent.error().message);
    return {};
  }
  while (!data.empty()) {
    const ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for_fd(fd_.get(), POLLOUT, deadline)) return fail("sending the request: timed out");
      continue;
    }
    return fail(std::string("sending the request: ") + std::strerror(errno));
  }
  return {};
}

bool UpstreamConnection::fill(Clock::time_point deadline) {
  if (begin_ == end_) begin_ = end_ = 0;
  if (end_ == kBufferSize) {
    if (begin_ == 0) return false;  // a full buffer: the caller's line limit decides
    std::memmove(buffer_.get(), buffer_.get() + begin_, buffered());
    end_ -= begin_;
    begin_ = 0;
  }
  if (tls_) {
    const long n = tls_->read(buffer_.get() + end_, kBufferSize - end_, deadline);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      return true;
    }
    if (n == 0) {
      eof_ = true;
    } else if (tls_->timed_out()) {
      timed_out_ = true;
    } else {
      tls_error_ = tls_->error();
    }
    return false;
  }
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), buffer_.get() + end_, kBufferSize - end_, 0);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      return true;
    }
    if (n == 0) {
      eof_ = true;
      return false;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      error_ = errno;
      return false;
    }
    if (!wait_for_fd(fd_.get(), POLLIN, deadline)) {
      timed_out_ = true;
      return false;
    }
  }
}

core::Result<std::string> UpstreamConnection::line(size_t max, Clock::time_point deadline, const char* what) {
  size_t scanned = 0;
  for (;;) {
    const std::string_view have(buffer_.get() + begin_, buffered());
    if (const auto pos = have.find("\r\n", scanned > 0 ? scanned - 1 : 0); pos != std::string_view::npos) {
      std::string out(have.substr(0, pos));
      begin_ += pos + 2;
      return out;
    }
    scanned = have.size();
    if (have.size() > max) return fail(std::string(what) + ": line over " + std::to_string(max) + " bytes");
    if (!fill(deadline)) return broken(what);
  }
}

core::Result<ResponseHead> UpstreamConnection::read_head(std::string_view request_method, Clock::time_point deadline) {
  ResponseHead head;
  do {
    auto status_line = line(kMaxLineBytes, deadline, "reading the status line");
    if (!status_line) return status_line.error();
    const std::string& l = *status_line;
    if (l.size() < 12 || l.compare(0, 5, "HTTP/") != 0) return fail("not an HTTP response: " + l.substr(0, 80));
    const auto sp = l.find(' ');
    head.status = 0;
    std::from_chars(l.data() + sp + 1, l.data() + l.size(), head.status);
    if (head.status < 100 || head.status > 999) return fail("bad status line: " + l.substr(0, 80));
    head.reason = l.size() > sp + 5 ? l.substr(sp + 5) : std::string();
    head.headers.clear();
    for (;;) {
      auto header_line = line(kMaxLineBytes, deadline, "reading the response headers");
      if (!header_line) return header_line.error();
      if (header_line->empty()) break;
      const auto colon = header_line->find(':');
      if (colon == std::string::npos) return fail("bad header line: " + header_line->substr(0, 80));
      head.headers.emplace_back(header_line->substr(0, colon),
                                std::string(trim(std::string_view(*header_line).substr(colon + 1))));
      if (head.headers.size() > 1000) return fail("too many response headers");
    }
  } while (head.status < 200 && head.status != 101);

  framing_ = BodyFraming::until_close;
  remaining_ = 0;
  chunks_done_ = false;
  if (request_method == "HEAD" || head.status == 101 || head.status == 204 || head.status == 304) {
    framing_ = BodyFraming::none;
  } else if (iequals(head.header("Transfer-Encoding"), "chunked")) {
    framing_ = BodyFraming::chunked;
  } else if (const auto length = head.header("Content-Length"); !length.empty()) {
    uint64_t size = 0;
    const auto [end, ec] = std::from_chars(length.data(), length.data() + length.size(), size);
    if (ec != std::errc() || end != length.data() + length.size()) return fail("bad Content-Length: " + length);
    framing_ = size == 0 ? BodyFraming::none : BodyFraming::length;
    remaining_ = size;
  }
  return head;
}

core::Result<size_t> UpstreamConnection::read_body(char* out, size_t size, Clock::time_point deadline) {
  if (size == 0) return size_t{0};
  switch (framing_) {
    case BodyFraming::none:
      return size_t{0};
    case BodyFraming::length:
      if (remaining_ == 0) return size_t{0};
      size = static_cast<size_t>(std::min<uint64_t>(size, remaining_));
      break;
    case BodyFraming::chunked:
      if (chunks_done_) return size_t{0};
      if (remaining_ == 0) {
        auto size_line = line(kMaxLineBytes, deadline, "reading a chunk size");
        if (!size_line) return size_line.error();
        uint64_t chunk = 0;
        const auto [end, ec] = std::from_chars(size_line->data(), size_line->data() + size_line->size(), chunk, 16);
        if (ec != std::errc() || end == size_line->data()) return fail("bad chunk size: " + size_line->substr(0, 40));
        if (chunk == 0) {
          for (;;) {  // trailers, then the blank line
            auto trailer = line(kMaxLineBytes, deadline, "reading trailers");
            if (!trailer) return trailer.error();
            if (trailer->empty()) break;
          }
          chunks_done_ = true;
          return size_t{0};
        }
        remaining_ = chunk;
      }
      size = static_cast<size_t>(std::min<uint64_t>(size, remaining_));
      break;
    case BodyFraming::until_close:
      break;
  }
  if (buffered() == 0) {
    if (!fill(deadline)) {
      if (framing_ == BodyFraming::until_close && eof_) return size_t{0};
      return broken("reading the response body");
    }
  }
  const size_t n = std::min(size, buffered());
  std::memcpy(out, buffer_.get() + begin_, n);
  begin_ += n;
  if (framing_ == BodyFraming::length || framing_ == BodyFraming::chunked) remaining_ -= n;
  if (framing_ == BodyFraming::chunked && remaining_ == 0) {
    auto crlf = line(2, deadline, "reading a chunk");
    if (!crlf) return crlf.error();
    if (!crlf->empty()) return fail("a chunk is longer than its size");
  }
  return n;
}

std::string UpstreamConnection::take_buffered() {
  std::string out(buffer_.get() + begin_, buffered());
  begin_ = end_ = 0;
  return out;
}

}  // namespace execd::http
