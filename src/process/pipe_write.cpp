#include "process/pipe_write.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace execd::process {

core::Result<void> write_all(int fd, std::string_view bytes, std::chrono::milliseconds timeout, size_t& written) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  written = 0;
  while (written < bytes.size()) {
    // MSG_NOSIGNAL does not exist for pipes; the daemon ignores SIGPIPE, so EPIPE it is.
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n >= 0) {
      written += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EPIPE) return core::make_error(core::Errc::conflict, "the process closed its stdin");
    if (errno != EAGAIN) return core::make_error(core::Errc::internal, std::string("write failed: ") + std::strerror(errno));
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return core::make_error(core::Errc::unavailable, "the process is not reading its stdin (wrote " +
                                                           std::to_string(written) + " of " +
                                                           std::to_string(bytes.size()) + " bytes)");
    }
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  return {};
}

}  // namespace execd::process
