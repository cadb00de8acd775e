#include "http/websocket_connection.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace execd::http {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kStopCheck = std::chrono::milliseconds(1000);

int ms_until(Clock::time_point t) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

}  // namespace

WebSocketConnection::WebSocketConnection(int fd, std::string already_read, Options options)
    : fd_(fd),
      pending_(std::move(already_read)),
      options_(options),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

void WebSocketConnection::wake() {
  if (!wake_fd_.valid()) return;
  const uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_fd_.get(), &one, sizeof one);
}

bool WebSocketConnection::write_all(std::string_view bytes) {
  if (broken_.load()) return false;
  const auto deadline = Clock::now() + options_.write_timeout;
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      const int left = ms_until(deadline);
      if (left > 0 && ::poll(&p, 1, left) > 0 && (p.revents & (POLLERR | POLLHUP)) == 0) continue;
      if (left > 0 && errno == EINTR) continue;
    }
    // A peer that does not take our bytes in time (or is gone) ends the connection:
    // a sender never waits for it again.
    broken_.store(true);
    wake();
    return false;
  }
  return true;
}

bool WebSocketConnection::send(WsOpcode opcode, std::string_view payload) {
  const std::string frame = encode_ws_frame(opcode, payload);
  std::lock_guard<std::mutex> lock(send_mu_);
  if (close_sent_.load()) return false;
  return write_all(frame);
}

bool WebSocketConnection::send_raw(std::string_view bytes) {
  std::lock_guard<std::mutex> lock(send_mu_);
  return write_all(bytes);
}

void WebSocketConnection::close(uint16_t code, std::string_view reason) {
  if (close_sent_.exchange(true)) return;
  if (options_.on_closing) options_.on_closing();
  {
    std::lock_guard<std::mutex> lock(send_mu_);
    sent_close_ = {code, std::string(reason)};
    write_all(encode_ws_frame(WsOpcode::close, ws_close_payload(code, reason)));
  }
  wake();
}

WsCloseInfo WebSocketConnection::run(const OnMessage& on_message) {
  WsFrameParser parser({options_.max_message_bytes, true});
  parser.feed(pending_);
  pending_.clear();
  pending_.shrink_to_fit();
  auto last_heard = Clock::now();
  auto last_ping = last_heard;
  std::optional<Clock::time_point> close_deadline;
  std::string buf(64 * 1024, '\0');
  auto sent = [this] {
    std::lock_guard<std::mutex> lock(send_mu_);
    return sent_close_;
  };

  while (true) {
    // Messages already buffered first (also those that arrived with the upgrade).
    WsMessage m;
    for (auto st = parser.next(m); st != WsFrameParser::Status::need_more; st = parser.next(m)) {
      if (st == WsFrameParser::Status::failed) {
        close(parser.close_code(), parser.close_reason());
        return sent();
      }
      switch (m.opcode) {
        case WsOpcode::ping: {
          std::lock_guard<std::mutex> lock(send_mu_);
          if (!close_sent_.load()) write_all(encode_ws_frame(WsOpcode::pong, m.payload));
          break;
        }
        case WsOpcode::pong:
          break;
        case WsOpcode::close: {
          WsCloseInfo peer = parse_ws_close(m.payload);
          // The reply echoes the peer's code (RFC 6455 5.5.1); then the server closes TCP.
          if (!close_sent_.load()) {
            close(peer.code == ws_close::kNoStatus ? ws_close::kNormal : peer.code, "");
            return peer;
          }
          return sent();
        }
        default:
          if (!close_sent_.load() && on_message) on_message(m.opcode, m.payload);
          break;
      }
    }
    if (broken_.load()) return close_sent_.load() ? sent() : WsCloseInfo{ws_close::kAbnormal, "write failed"};
    if (close_sent_.load() && !close_deadline) close_deadline = Clock::now() + options_.close_timeout;
    if (close_deadline && Clock::now() >= *close_deadline) return sent();

    const auto now = Clock::now();
    if (!close_sent_.load()) {
      if (options_.stopping != nullptr && options_.stopping->load()) {
        close(ws_close::kGoingAway, "server stopping");
        continue;
      }
      if (now - last_heard >= options_.idle_timeout) {
        close(ws_close::kGoingAway, "idle timeout");
        continue;
      }
      if (now - last_heard >= options_.ping_interval && now - last_ping >= options_.ping_interval) {
        last_ping = now;
        send(WsOpcode::ping, "");
      }
    }
    auto wait_until = now + kStopCheck;
    if (close_deadline) wait_until = std::min(wait_until, *close_deadline);
    if (!close_sent_.load()) {
      wait_until = std::min(wait_until, last_heard + options_.idle_timeout);
      wait_until = std::min(wait_until, std::max(last_heard, last_ping) + options_.ping_interval);
    }
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    const int ready = ::poll(fds, wake_fd_.valid() ? 2 : 1, std::max(ms_until(wait_until), 1));
    if (ready < 0 && errno != EINTR) return {ws_close::kAbnormal, "poll failed"};
    if (ready <= 0) continue;
    if (fds[1].revents & POLLIN) {
      uint64_t v = 0;
      [[maybe_unused]] const auto n = ::read(wake_fd_.get(), &v, sizeof v);
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        // Gone without a close frame (or after ours, which is then the close).
        return close_sent_.load() ? sent() : WsCloseInfo{ws_close::kAbnormal, "connection lost"};
      }
      if (n > 0) {
        last_heard = Clock::now();
        parser.feed(std::string_view(buf.data(), static_cast<size_t>(n)));
      }
    }
  }
}

}  // namespace execd::http
