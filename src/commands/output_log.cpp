#include "commands/output_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

namespace execd::commands {

core::Result<std::unique_ptr<OutputLog>> OutputLog::create(const std::string& dir_opt) {
  std::string dir = dir_opt;
  if (dir.empty()) {
    const char* t = std::getenv("TMPDIR");
    dir = (t != nullptr && *t != '\0') ? t : "/tmp";
  }
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::string tmpl = dir + "/execd-output-XXXXXX";
    fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(tmpl.c_str());
  }
  if (fd < 0) {
    return core::make_error(core::Errc::unavailable,
                            "cannot create an output log in " + dir + ": " + std::strerror(errno));
  }
  return std::unique_ptr<OutputLog>(new OutputLog(core::UniqueFd(fd)));
}

void OutputLog::append(std::string_view bytes) {
  if (failed_) return;
  uint64_t off = size_.load();
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pwrite(fd_.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      failed_ = true;
      spdlog::error("command output log: write failed ({}); further output is not kept for /logs", std::strerror(errno));
      break;
    }
    done += static_cast<size_t>(n);
  }
  size_.store(off + done);  // publish only what is on disk
}

std::string OutputLog::read(uint64_t offset, size_t max) const {
  const uint64_t end = size_.load();
  if (offset >= end) return {};
  std::string out(static_cast<size_t>(std::min<uint64_t>(max, end - offset)), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::pread(fd_.get(), out.data() + got, out.size() - got, static_cast<off_t>(offset + got));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

}  // namespace execd::commands
