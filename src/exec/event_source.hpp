#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <vector>

#include "exec/event.hpp"

namespace execd::exec {

/// Where a reader stands in a stream: the last sequence number it has seen. The spill
/// hint lets a sequential reader of a spilled log continue without re-scanning.
struct Cursor {
  static constexpr uint64_t kNoHint = std::numeric_limits<uint64_t>::max();
  uint64_t after = 0;               ///< last seq delivered (0: from the start)
  uint64_t spill_offset = kNoHint;  ///< file offset of event after+1, when known
};

struct ReadResult {
  std::vector<Event> events;
  bool end = false;  ///< the stream is closed and the reader has everything
};

/// Something an SSE stream or a poller reads from: an execution's EventLog, or a live
/// feed such as the metrics sampler. Thread-safe; many readers at once.
class EventSource {
 public:
  virtual ~EventSource() = default;
  /// Events after cursor.after (at most `max_events`), waiting up to `wait` for the first.
  /// Advances the cursor past what it returns. Returns at once when events or the end
  /// are there; returns empty on timeout.
  virtual ReadResult read(Cursor& cursor, size_t max_events, std::chrono::milliseconds wait) = 0;
};

}  // namespace execd::exec
