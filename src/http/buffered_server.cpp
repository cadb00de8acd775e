#include "http/buffered_server.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "http/connection_stream.hpp"

namespace execd::http {
namespace {

std::chrono::milliseconds to_ms(time_t sec, time_t usec) {
  return std::chrono::milliseconds(sec * 1000 + (usec + 999) / 1000);
}

}  // namespace

BufferedServer::BufferedServer() : stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

void BufferedServer::end_idle_connections() {
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_fd_.get(), &one, sizeof one);  // never read: stays readable
}

bool BufferedServer::process_and_close_socket(socket_t sock) {
  ConnectionStream stream(sock, to_ms(read_timeout_sec_, read_timeout_usec_),
                          to_ms(write_timeout_sec_, write_timeout_usec_));
  const auto keep_alive = to_ms(keep_alive_timeout_sec_, 0);
  bool ok = false;
  for (size_t left = keep_alive_max_count_;
       left > 0 && svr_sock_ != INVALID_SOCKET && stream.wait_for_request(keep_alive, stop_fd_.get()); --left) {
    bool closed = false;
    stream.begin_request();
    ok = process_request(stream, left == 1, closed, nullptr);
    if (!ok || closed || stream.head_timed_out()) break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace execd::http
