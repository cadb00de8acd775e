#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/temp_file.hpp"
#include "exec/event_source.hpp"

namespace execd::exec {

/// An execution's append-only event log: events get sequence numbers 1, 2, 3, ...; any
/// number of readers each read from their own cursor and may block for more; the
/// terminal event closes the log.
///
/// Memory is bounded: when the events held in memory exceed `memory_bytes`, the oldest
/// are written to a spill file and read back from it on demand, so a reader that attaches
/// late (replay, Last-Event-ID) still sees every event while the daemon's memory stays
/// flat. If the spill file cannot be written (disk full), events stay in memory and the
/// failure is logged once. Once closed, the log holds no descriptor: readers open the
/// spill file by name per read (core::ReopenableFile), so retained logs cost none.
///
/// Disk is bounded too: past `max_bytes` of events (memory and spill together; 0 means
/// unlimited) further events are dropped, after one `status` event that says so; the
/// terminal event always gets in. `yes | head -c 2G` would otherwise make a billion
/// events; its bytes are kept whole elsewhere (a command's OutputLog).
///
/// Thread-safe: one or more producers append, many readers read.
class EventLog final : public EventSource {
 public:
  struct Options {
    size_t memory_bytes = 256 * 1024;
    std::string spill_dir;  ///< empty: $TMPDIR or /tmp (the daemon passes its runtime dir)
    uint64_t max_bytes = 0;  ///< events kept per log, memory + disk; 0: unlimited
  };

  explicit EventLog(Options options);
  ~EventLog() override;
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  /// Appends and returns the event's seq; returns 0 (and drops it) once closed or full.
  uint64_t append(Event event);
  /// Appends `terminal` as the last event and closes the log. No-op if already closed.
  uint64_t close(Event terminal);
  /// Closes with no further event (the producer went away).
  void close();
  /// `on_close` is called once, by the thread that closes the log, after it closed and
  /// before waiting readers are woken: with the terminal event, or with an empty Event when
  /// close() came without one (metrics).
  /// Set before any producer runs.
  void set_on_close(std::function<void(const Event& terminal)> on_close) { on_close_ = std::move(on_close); }

  [[nodiscard]] bool is_closed() const;
  /// False once closed or full: producers may skip building events nobody keeps.
  [[nodiscard]] bool accepting() const;
  [[nodiscard]] uint64_t last_seq() const;
  /// Bytes of event data held in memory now (for tests and metrics).
  [[nodiscard]] size_t memory_bytes() const;
  /// Events written to the spill file so far.
  [[nodiscard]] uint64_t spilled_count() const;
  /// True while the log holds an open spill descriptor (for tests).
  [[nodiscard]] bool holds_descriptor() const;

  ReadResult read(Cursor& cursor, size_t max_events, std::chrono::milliseconds wait) override;

  /// Wakes every blocked reader (they return what they have, possibly nothing).
  void notify_readers();

 private:
  static constexpr uint64_t kIndexStride = 256;  // one spill offset kept per this many events

  uint64_t append_locked(Event event, bool may_spill = true);
  void spill_locked(size_t keep_bytes);
  ReadResult read_spilled(int fd, Cursor& cursor, size_t max_events, uint64_t spilled_upto, uint64_t start_offset,
                          uint64_t scan_from_seq);

  Options options_;
  std::function<void(const Event&)> on_close_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> memory_;       // events spilled_upto_+1 .. last_seq_
  size_t memory_bytes_ = 0;
  uint64_t last_seq_ = 0;
  bool closed_ = false;
  bool full_ = false;               // max_bytes reached: only the terminal event gets in

  std::unique_ptr<core::ReopenableFile> spill_;  // created on the first spill
  bool spill_failed_ = false;
  uint64_t spilled_upto_ = 0;       // events 1..spilled_upto_ live in the spill file
  uint64_t spill_end_ = 0;          // bytes written to the spill file
  std::vector<uint64_t> index_;     // index_[i] = offset of event i*kIndexStride+1
};

}  // namespace execd::exec
