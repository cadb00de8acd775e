#include "http/connection_stream.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace execd::http {
namespace {

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                     : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (r != 0) return;
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return;
  }
  ip = host;
  port = std::atoi(serv);
}

}  // namespace

ConnectionStream::ConnectionStream(int fd, std::chrono::milliseconds read_timeout,
                                   std::chrono::milliseconds write_timeout)
    : fd_(fd), read_timeout_(read_timeout), write_timeout_(write_timeout), buffer_(new char[kBufferSize]) {}

int ConnectionStream::poll_for(short events, std::chrono::milliseconds timeout) const {
  pollfd p{fd_, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? -1 : r;
  }
}

bool ConnectionStream::is_readable() const {
  return !detached_ && (buffered() > 0 || poll_for(POLLIN, read_timeout_) > 0);
}

bool ConnectionStream::is_writable() const { return !broken_; }

bool ConnectionStream::wait_for_request(std::chrono::milliseconds timeout, int stop_fd) const {
  if (buffered() > 0) return true;  // the server checks it is still running before each wait
  pollfd p[2] = {{stop_fd, POLLIN, 0}, {fd_, POLLIN, 0}};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    const int r = ::poll(p, 2, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0 || p[0].revents != 0) return false;
    return true;
  }
}

void ConnectionStream::begin_request() {
  in_head_ = true;
  body_bounded_ = false;
  byte_run_ = 0;
  head_line_length_ = 1;  // a leading blank line does not end the head
  deadline_ = std::chrono::steady_clock::now() + read_timeout_;
}

void ConnectionStream::bound_body(std::chrono::milliseconds within) {
  body_bounded_ = true;
  deadline_ = std::chrono::steady_clock::now() + within;
}

ConnectionStream::HeadWait ConnectionStream::peek_head(size_t max_bytes, std::string_view& head) {
  size_t scanned = 0;  // bytes from begin_ already searched for the end
  for (;;) {
    const std::string_view have(buffer_.get() + begin_, buffered());
    const size_t from = scanned > 3 ? scanned - 3 : 0;
    const size_t pos = have.find("\r\n\r\n", from);
    if (pos != std::string_view::npos) {
      head = have.substr(0, pos + 4);
      return head.size() > max_bytes ? HeadWait::too_large : HeadWait::ready;
    }
    scanned = have.size();
    if (have.size() >= max_bytes) return HeadWait::too_large;
    if (end_ == capacity_) {
      if (begin_ > 0) {
        std::memmove(buffer_.get(), buffer_.get() + begin_, buffered());
      } else {
        // Only a head limit above kBufferSize gets here: grow towards it.
        const size_t grown = std::min(std::max(capacity_ * 2, kBufferSize), max_bytes + 4);
        std::unique_ptr<char[]> bigger(new char[grown]);
        std::memcpy(bigger.get(), buffer_.get() + begin_, buffered());
        buffer_ = std::move(bigger);
        capacity_ = grown;
      }
      end_ -= begin_;
      begin_ = 0;
    }
    const ssize_t n = receive(buffer_.get() + end_, capacity_ - end_);
    if (n <= 0) return HeadWait::failed;
    end_ += static_cast<size_t>(n);
  }
}

void ConnectionStream::drain(size_t max_bytes, std::chrono::milliseconds max_time) {
  begin_ = end_ = 0;
  const auto deadline = std::chrono::steady_clock::now() + max_time;
  for (size_t dropped = 0; dropped < max_bytes;) {
    const ssize_t n = ::recv(fd_, buffer_.get(), capacity_, MSG_DONTWAIT);
    if (n == 0) return;
    if (n > 0) {
      dropped += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || poll_for(POLLIN, left) <= 0) return;
  }
}

void ConnectionStream::track_head(const char* p, size_t n) {
  for (size_t i = 0; i < n && in_head_; ++i) {
    if (p[i] == '\n') {
      if (head_line_length_ == 0) in_head_ = false;  // the blank line: the body follows
      head_line_length_ = 0;
    } else if (p[i] != '\r') {
      ++head_line_length_;
    }
  }
}

ssize_t ConnectionStream::receive(char* ptr, size_t size) {
  // A trickle that always has a byte waiting must not outlive the deadline either.
  if (is_bounded() && std::chrono::steady_clock::now() >= deadline_) {
    (in_head_ ? head_timed_out_ : body_timed_out_) = true;
    return -1;
  }
  for (;;) {
    const ssize_t n = ::recv(fd_, ptr, size, MSG_DONTWAIT);
    if (n >= 0) return n > 0 ? n : -1;  // 0: the peer closed
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    auto wait = read_timeout_;
    const bool bounded = is_bounded() && deadline_ - std::chrono::steady_clock::now() < read_timeout_;
    if (bounded) wait = std::chrono::ceil<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
    const int r = wait.count() <= 0 ? 0 : poll_for(POLLIN, wait);
    if (r == 0 && bounded) (in_head_ ? head_timed_out_ : body_timed_out_) = true;
    if (r <= 0) return -1;
  }
}

std::string ConnectionStream::detach() {
  std::string rest(buffer_.get() + begin_, buffered());
  begin_ = end_ = 0;
  detached_ = true;
  return rest;
}

ssize_t ConnectionStream::read(char* ptr, size_t size) {
  if (detached_) return -1;
  if (size == 0) return 0;
  if (buffered() == 0) {
    if (size >= capacity_ && !in_head_) return receive(ptr, size);
    const ssize_t n = receive(buffer_.get(), capacity_);
    if (n <= 0) return n;
    begin_ = 0;
    end_ = static_cast<size_t>(n);
  }
  const size_t n = std::min(size, buffered());
  std::memcpy(ptr, buffer_.get() + begin_, n);
  begin_ += n;
  if (in_head_) track_head(ptr, n);
  // httplib reads lines a byte at a time into a growing string; bound them.
  if (in_head_ || n != 1 || *ptr == '\n') {
    byte_run_ = 0;
  } else if (++byte_run_ > kMaxLineBytes) {
    line_too_long_ = true;
    return -1;
  }
  return static_cast<ssize_t>(n);
}

ssize_t ConnectionStream::write(const char* ptr, size_t size) {
  if (detached_) return static_cast<ssize_t>(size);
  if (broken_) return -1;
  for (;;) {
    const ssize_t n = ::send(fd_, ptr, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && poll_for(POLLOUT, write_timeout_) > 0) continue;
    broken_ = true;
    return -1;
  }
}

void ConnectionStream::get_remote_ip_and_port(std::string& ip, int& port) const { address_of(fd_, true, ip, port); }

void ConnectionStream::get_local_ip_and_port(std::string& ip, int& port) const { address_of(fd_, false, ip, port); }

}  // namespace execd::http
