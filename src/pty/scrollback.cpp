#include "pty/scrollback.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/temp_file.hpp"

namespace execd::pty {

Scrollback::Scrollback(Options options) : options_(std::move(options)) {
  options_.memory_bytes = std::max<size_t>(options_.memory_bytes, 1024);
}

void Scrollback::append(uint8_t channel, std::string_view bytes) {
  if (bytes.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    if (runs_.empty() || runs_.back().second != channel) runs_.emplace_back(end_, channel);
    mem_.append(bytes);
    end_ += bytes.size();
    // Spill half the memory at a time, so a steady stream spills in large writes.
    if (mem_.size() > options_.memory_bytes) spill_locked(mem_.size() - options_.memory_bytes / 2);
  }
  cv_.notify_all();
}

void Scrollback::spill_locked(size_t n) {
  const uint64_t segment_cap = std::max<uint64_t>(options_.disk_bytes / 4, 1);
  size_t done = 0;
  while (done < n && options_.disk_bytes > 0) {
    if (segments_.empty() || segments_.back().size >= segment_cap) {
      core::UniqueFd fd = core::open_unlinked_temp(options_.spill_dir);
      if (!fd.valid()) break;
      segments_.push_back({mem_start_ + done, 0, std::move(fd)});
    }
    Segment& s = segments_.back();
    const size_t take = static_cast<size_t>(std::min<uint64_t>(n - done, segment_cap - s.size));
    const ssize_t w = ::pwrite(s.fd.get(), mem_.data() + done, take, static_cast<off_t>(s.size));
    if (w <= 0) break;
    s.size += static_cast<uint64_t>(w);
    disk_total_ += static_cast<uint64_t>(w);
    done += static_cast<size_t>(w);
  }
  if (done < n && options_.disk_bytes > 0 && !spill_failed_logged_) {
    spill_failed_logged_ = true;
    spdlog::warn("pty scrollback: spilling to disk failed ({}); older output is dropped", std::strerror(errno));
  }
  // What could not be spilled is dropped: memory stays bounded whatever the disk does.
  // Older bytes on disk then no longer touch the kept ones: drop them too.
  if (done < n) {
    disk_total_ = 0;
    segments_.clear();
  }
  mem_.erase(0, n);
  mem_start_ += n;
  while (disk_total_ > options_.disk_bytes && !segments_.empty()) {
    disk_total_ -= segments_.front().size;
    segments_.pop_front();
  }
  const uint64_t first = begin_locked();
  while (runs_.size() > 1 && runs_[1].first <= first) runs_.pop_front();
}

uint64_t Scrollback::begin_locked() const {
  return segments_.empty() ? mem_start_ : segments_.front().start;
}

uint64_t Scrollback::begin() const {
  std::lock_guard<std::mutex> lock(mu_);
  return begin_locked();
}

uint64_t Scrollback::end() const {
  std::lock_guard<std::mutex> lock(mu_);
  return end_;
}

Scrollback::Chunk Scrollback::read(uint64_t offset, size_t max) const {
  std::lock_guard<std::mutex> lock(mu_);
  Chunk c;
  c.offset = std::clamp(offset, begin_locked(), end_);
  if (c.offset == end_ || max == 0) return c;
  // The channel run holding c.offset, and where the next run starts.
  auto next = std::upper_bound(runs_.begin(), runs_.end(), c.offset,
                               [](uint64_t o, const std::pair<uint64_t, uint8_t>& r) { return o < r.first; });
  uint64_t limit = next == runs_.end() ? end_ : next->first;
  if (next != runs_.begin()) c.channel = std::prev(next)->second;
  limit = std::min<uint64_t>(limit, c.offset + max);
  if (c.offset >= mem_start_) {
    c.bytes.assign(mem_, static_cast<size_t>(c.offset - mem_start_), static_cast<size_t>(limit - c.offset));
    return c;
  }
  for (const Segment& s : segments_) {
    if (c.offset >= s.start + s.size) continue;
    const uint64_t in_segment = std::min(limit, s.start + s.size) - c.offset;
    c.bytes.resize(static_cast<size_t>(in_segment));
    const ssize_t r = ::pread(s.fd.get(), c.bytes.data(), c.bytes.size(), static_cast<off_t>(c.offset - s.start));
    c.bytes.resize(r > 0 ? static_cast<size_t>(r) : 0);
    return c;
  }
  return c;
}

bool Scrollback::wait_beyond(uint64_t offset, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return end_ > offset || closed_; });
  return end_ > offset;
}

void Scrollback::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

bool Scrollback::is_closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

size_t Scrollback::memory_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mem_.size();
}

uint64_t Scrollback::disk_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return disk_total_;
}

}  // namespace execd::pty
