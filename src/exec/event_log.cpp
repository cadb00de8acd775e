#include "exec/event_log.hpp"

#include "core/fd_io.hpp"
#include "core/temp_file.hpp"
#include "exec/event.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

namespace execd::exec {
namespace {

constexpr size_t kEventOverhead = sizeof(Event) + 32;  // rough per-event bookkeeping
constexpr size_t kMaxReadBytes = 512 * 1024;             // one read() batch

size_t cost(const Event& e) { return e.json.size() + e.type.size() + kEventOverhead; }


}  // namespace

EventLog::EventLog(Options options) : options_(std::move(options)) {}

EventLog::~EventLog() = default;  // removes the spill file

uint64_t EventLog::append(Event event) {
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || full_) return 0;
    if (options_.max_bytes > 0 && spill_end_ + memory_bytes_ + cost(event) > options_.max_bytes) {
      // This event is the first one dropped; readers learn why from the notice.
      full_ = true;
      append_locked(events::status("event log full: later events of this execution are dropped (" +
                                   std::to_string(options_.max_bytes) + " bytes, --event-log-max); "
                                   "the terminal event still follows"));
    } else {
      seq = append_locked(std::move(event));
    }
  }
  cv_.notify_all();
  return seq;
}

uint64_t EventLog::close(Event terminal) {
  uint64_t seq = 0;
  Event seen;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return 0;
    if (on_close_) seen = terminal;
    // A log that already spills moves the rest of its events to the file as it closes:
    // it may be retained for many minutes, and thousands of retained logs must not each
    // keep their memory budget. (One that never spilled keeps its few events in memory:
    // creating a file now would cost more than it saves.)
    if (spill_ && !spill_failed_) spill_locked(0);
    seq = append_locked(std::move(terminal), /*may_spill=*/false);
    closed_ = true;
    if (spill_) spill_->seal();
  }
  // The outcome is recorded (on_close: the registry's hook) before readers wake: a client
  // answered from the terminal event must find the execution ended when it asks next.
  if (on_close_) on_close_(seen);
  cv_.notify_all();
  return seq;
}

void EventLog::close() {
  bool was_open = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    was_open = !closed_;
    closed_ = true;
    if (spill_) spill_->seal();
  }
  if (was_open && on_close_) on_close_(Event{});
  cv_.notify_all();
}

bool EventLog::accepting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !closed_ && !full_;
}

bool EventLog::is_closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

uint64_t EventLog::last_seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_seq_;
}

size_t EventLog::memory_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return memory_bytes_;
}

uint64_t EventLog::spilled_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return spilled_upto_;
}

bool EventLog::holds_descriptor() const {
  std::lock_guard<std::mutex> lock(mu_);
  return spill_ && spill_->write_fd() >= 0;
}

void EventLog::notify_readers() { cv_.notify_all(); }

uint64_t EventLog::append_locked(Event event, bool may_spill) {
  event.seq = ++last_seq_;
  memory_bytes_ += cost(event);
  memory_.push_back(std::move(event));
  // The terminal event never spills: a short execution with one large output event then
  // never pays for a spill file (its creation dominated a 1 MiB cell).
  if (may_spill && memory_bytes_ > options_.memory_bytes && !spill_failed_) spill_locked(options_.memory_bytes / 2);
  return last_seq_;
}

void EventLog::spill_locked(size_t keep_bytes) {
  if (!spill_) {
    spill_ = core::ReopenableFile::create(options_.spill_dir);
    if (!spill_) {
      spill_failed_ = true;
      spdlog::error("event log: cannot open a spill file ({}); keeping events in memory", std::strerror(errno));
      return;
    }
  }
  // Spill down to `keep_bytes` (half the budget while running, so spilling happens in
  // batches, not per event).
  std::string buf;
  size_t n = 0;
  size_t freed = 0;
  std::vector<uint64_t> new_index;
  uint64_t offset = spill_end_;
  // The newest event stays in memory (it is what live readers are about to read): memory
  // is bounded by the budget plus one event.
  while (n + 1 < memory_.size() && memory_bytes_ - freed > keep_bytes) {
    const Event& e = memory_[n];
    if ((e.seq - 1) % kIndexStride == 0) new_index.push_back(offset);
    // One line per event: "<type>\t<json>\n". Compact JSON never holds a raw newline.
    const size_t before = buf.size();
    buf += e.type;
    buf += '\t';
    buf += e.json;
    buf += '\n';
    offset += buf.size() - before;
    freed += cost(e);
    ++n;
  }
  if (n == 0) return;
  if (!core::pwrite_all(spill_->write_fd(), buf, spill_end_)) {
    spill_failed_ = true;
    spdlog::error("event log: spill write failed ({}); keeping events in memory", std::strerror(errno));
    // The file may hold a partial tail past spill_end_; it is never read.
    return;
  }
  spill_end_ = offset;
  index_.insert(index_.end(), new_index.begin(), new_index.end());
  spilled_upto_ = memory_[n - 1].seq;
  memory_.erase(memory_.begin(), memory_.begin() + static_cast<std::ptrdiff_t>(n));
  memory_bytes_ -= freed;
}

ReadResult EventLog::read(Cursor& cursor, size_t max_events, std::chrono::milliseconds wait) {
  if (max_events == 0) max_events = 1;
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, wait, [&] { return last_seq_ > cursor.after || closed_; });

  const uint64_t want = cursor.after + 1;
  if (want <= spilled_upto_) {
    // Work out where in the file event `want` starts, then read without the lock:
    // everything below spill_end_ is immutable.
    uint64_t start = 0;
    uint64_t scan_from = 0;
    if (cursor.spill_offset != Cursor::kNoHint) {
      start = cursor.spill_offset;
      scan_from = want;
    } else {
      const uint64_t slot = (want - 1) / kIndexStride;
      start = index_[slot];
      scan_from = slot * kIndexStride + 1;
    }
    const uint64_t upto = spilled_upto_;
    // The writer's descriptor while open, else the file reopened for this read only.
    const auto fd = spill_->reader();
    lock.unlock();
    if (!fd) {
      spdlog::error("event log: cannot open the spill file {}: {}", spill_->path(), std::strerror(errno));
      return {};
    }
    return read_spilled(fd->get(), cursor, max_events, upto, start, scan_from);
  }

  ReadResult out;
  size_t bytes = 0;
  const size_t first = static_cast<size_t>(want - spilled_upto_ - 1);
  for (size_t i = first; i < memory_.size() && out.events.size() < max_events && bytes < kMaxReadBytes; ++i) {
    bytes += memory_[i].json.size();
    out.events.push_back(memory_[i]);
  }
  if (!out.events.empty()) cursor.after = out.events.back().seq;
  cursor.spill_offset = Cursor::kNoHint;
  out.end = closed_ && cursor.after == last_seq_;
  return out;
}

ReadResult EventLog::read_spilled(int fd, Cursor& cursor, size_t max_events, uint64_t spilled_upto, uint64_t start_offset,
                                  uint64_t scan_from_seq) {
  ReadResult out;
  const uint64_t want = cursor.after + 1;
  uint64_t seq = scan_from_seq;
  uint64_t offset = start_offset;
  std::string buf;
  std::string chunk(64 * 1024, '\0');
  size_t bytes = 0;
  while (seq <= spilled_upto && out.events.size() < max_events && bytes < kMaxReadBytes) {
    const size_t nl = buf.find('\n');
    if (nl == std::string::npos) {
      const ssize_t n = ::pread(fd, chunk.data(), chunk.size(), static_cast<off_t>(offset + buf.size()));
      if (n <= 0) {
        spdlog::error("event log: spill read failed at offset {}", offset + buf.size());
        break;
      }
      buf.append(chunk.data(), static_cast<size_t>(n));
      continue;
    }
    if (seq >= want) {
      const size_t tab = buf.find('\t');
      Event e;
      e.seq = seq;
      e.type = buf.substr(0, tab);
      e.json = buf.substr(tab + 1, nl - tab - 1);
      bytes += e.json.size();
      out.events.push_back(std::move(e));
    }
    offset += nl + 1;
    buf.erase(0, nl + 1);
    ++seq;
  }
  if (!out.events.empty()) {
    cursor.after = out.events.back().seq;
    cursor.spill_offset = cursor.after < spilled_upto ? offset : Cursor::kNoHint;
  }
  return out;  // never `end`: the terminal event is always in memory or after this batch
}

}  // namespace execd::exec
