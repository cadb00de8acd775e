#include "commands/output_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/fd_io.hpp"
#include "core/temp_file.hpp"

namespace execd::commands {
namespace {

std::unique_ptr<core::ReopenableFile> open_temp(const std::string& dir) {
  auto file = core::ReopenableFile::create(dir);
  if (!file) spdlog::error("cannot create a command output file in {}: {}", dir.empty() ? "$TMPDIR" : dir, std::strerror(errno));
  return file;
}

bool pwrite_all(int fd, std::string_view bytes, uint64_t offset) {
  if (core::pwrite_all(fd, bytes, offset)) return true;
  spdlog::error("command output log: write failed ({}); further output is not kept for /logs", std::strerror(errno));
  return false;
}

}  // namespace

bool OutputLog::spill() {
  file_ = open_temp(dir_);
  if (!file_) return false;
  if (!pwrite_all(file_->write_fd(), head_, 0)) return false;
  head_.clear();
  head_.shrink_to_fit();
  spilled_.store(true, std::memory_order_release);
  return true;
}

void OutputLog::append(std::string_view bytes) {
  if (failed_ || bytes.empty()) return;
  const uint64_t off = size_.load();
  if (!spilled_.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(mu_);
    if (head_.size() + bytes.size() <= kInMemory) {
      head_.append(bytes);
      size_.store(off + bytes.size());
      return;
    }
    if (!spill()) {
      failed_ = true;
      return;
    }
  }
  // Past the spill the file never changes identity, so writes need no lock; the size
  // is published only once the bytes are on disk.
  if (!pwrite_all(file_->write_fd(), bytes, off)) {
    failed_ = true;
    return;
  }
  size_.store(off + bytes.size());
}

std::string OutputLog::read(uint64_t offset, size_t max) const {
  const uint64_t end = size_.load();
  if (offset >= end) return {};
  const size_t want = static_cast<size_t>(std::min<uint64_t>(max, end - offset));
  if (!spilled_.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!spilled_.load(std::memory_order_relaxed)) {
      return head_.substr(static_cast<size_t>(offset), want);
    }
  }
  const auto fd = file_->reader();
  if (!fd) {
    spdlog::error("command output log: cannot open {}: {}", file_->path(), std::strerror(errno));
    return {};
  }
  std::string out(want, '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::pread(fd->get(), out.data() + got, out.size() - got, static_cast<off_t>(offset + got));
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

namespace execd::commands {

void OutputLog::seal() {
  if (file_) file_->seal();  // writer thread: file_ is its own
}

bool OutputLog::holds_descriptor() const {
  return spilled_.load(std::memory_order_acquire) && file_->write_fd() >= 0;
}

}  // namespace execd::commands
