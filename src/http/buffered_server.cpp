#include "http/buffered_server.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "exec/event.hpp"
#include "http/connection_stream.hpp"
#include "http/error_mapping.hpp"
#include "http/request_id.hpp"

namespace execd::http {
namespace {

// After an early answer, what the peer may still send is read and dropped for this long
// (nginx's lingering close): closing with unread bytes sends a reset, and a reset can
// destroy the answer before the peer reads it.
constexpr size_t kLingerBytes = 1 << 20;
constexpr std::chrono::milliseconds kLingerTime{500};

std::chrono::milliseconds to_ms(time_t sec, time_t usec) {
  return std::chrono::milliseconds(sec * 1000 + (usec + 999) / 1000);
}

// The request the calling thread serves. Handlers run on the connection's thread, so
// this is how a route reaches its connection (httplib 0.11's Request has no slot).
struct Current {
  ConnectionStream* stream = nullptr;
  const HeadInfo* head = nullptr;
  bool must_close = false;
  std::chrono::steady_clock::time_point start;
};
thread_local Current current;

bool write_all(ConnectionStream& stream, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = stream.write(bytes.data() + off, bytes.size() - off);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Answers a refused head ourselves: httplib would parse it (or wait for a body).
void refuse(ConnectionStream& stream, int status, const std::string& message) {
  const HttpError e = map_protocol_status(status);
  const std::string body = exec::dump_json({{"code", e.code}, {"message", message}});
  write_all(stream, "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason_phrase(status)) +
                        "\r\nContent-Type: application/json\r\n" + kRequestIdHeader + ": " + accept_request_id({}) +
                        "\r\nContent-Length: " + std::to_string(body.size()) +
                        "\r\nConnection: close\r\n\r\n" + body);
}

// What routes can be registered for; httplib would read the body of another (PRI)
// unbounded before answering 400.
bool is_served_method(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "POST" || method == "PUT" || method == "PATCH" ||
         method == "DELETE" || method == "OPTIONS";
}

// httplib reads a body only for these methods (detail::expect_content).
bool httplib_reads_body(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE" || method == "PRI";
}

}  // namespace

BufferedServer::BufferedServer() : stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

void BufferedServer::end_idle_connections() {
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_fd_.get(), &one, sizeof one);  // never read: stays readable
}

const HeadInfo* BufferedServer::current_head() { return current.head; }

void BufferedServer::close_after_response(httplib::Response& res) {
  current.must_close = true;
  res.set_header("Connection", "close");
}

void BufferedServer::bound_body(std::chrono::milliseconds within) {
  if (current.stream != nullptr) current.stream->bound_body(within);
}

int BufferedServer::take_over_connection(std::string& buffered) {
  if (current.stream == nullptr) return -1;
  current.must_close = true;
  buffered = current.stream->detach();
  return current.stream->socket();
}

std::chrono::steady_clock::time_point BufferedServer::current_start() { return current.start; }

bool BufferedServer::process_and_close_socket(socket_t sock) {
  ConnectionStream stream(sock, to_ms(read_timeout_sec_, read_timeout_usec_),
                          to_ms(write_timeout_sec_, write_timeout_usec_));
  const auto keep_alive = to_ms(keep_alive_timeout_sec_, 0);
  bool ok = false;
  bool linger = false;
  for (size_t left = keep_alive_max_count_;
       left > 0 && svr_sock_ != INVALID_SOCKET && stream.wait_for_request(keep_alive, stop_fd_.get()); --left) {
    stream.begin_request();
    const auto started = std::chrono::steady_clock::now();
    std::string_view bytes;
    const auto wait = stream.peek_head(head_limits_.max_head_bytes, bytes);
    if (wait == ConnectionStream::HeadWait::failed) break;  // closed, or the head's deadline passed
    if (wait == ConnectionStream::HeadWait::too_large) {
      refuse(stream, 431, "request line and headers exceed " + std::to_string(head_limits_.max_head_bytes) + " bytes");
      linger = true;
      break;
    }
    const HeadCheck check = check_request_head(bytes, head_limits_);
    if (!check) {
      refuse(stream, check.status, check.message);
      linger = true;
      break;
    }
    if (!is_served_method(check.info->method)) {
      refuse(stream, 501, "method " + std::string(check.info->method) + " is not implemented");
      linger = true;
      break;
    }
    // Before httplib reads on: check.info->method views the buffer.
    const bool body_left = check.info->has_body() && !httplib_reads_body(check.info->method);
    HeadInfo head = *check.info;
    head.method = {};
    current = Current{&stream, &head, false, started};
    bool closed = false;
    ok = process_request(stream, left == 1, closed, nullptr);
    const bool must_close = current.must_close || body_left;
    current = Current{};
    // A taken-over connection was closed by its protocol: nothing to linger for.
    if ((must_close || !ok) && !stream.is_detached()) linger = true;
    if (!ok || closed || must_close || stream.is_spoiled()) break;
  }
  if (linger) {
    ::shutdown(sock, SHUT_WR);
    stream.drain(kLingerBytes, kLingerTime);
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace execd::http
