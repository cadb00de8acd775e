#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace execd::exec {

/// One event as clients receive it. The wire JSON is rendered once, when the event is
/// made, so every reader (live SSE, replay after reconnect, polling) sends the same bytes
/// and nothing re-renders per reader. `seq` is assigned by EventLog::append.
struct Event {
  uint64_t seq = 0;
  std::string type;  ///< "init", "stdout", "stderr", "result", "error", "execution_complete", ...
  std::string json;  ///< compact JSON object with "type" and "timestamp" (Unix ms)
};

/// The contract's event shapes (ServerStreamEvent). Field names live here and nowhere else.
/// Text that is not valid UTF-8 is repaired (U+FFFD), never rejected: output bytes must
/// not break the stream.
namespace events {

Event init(const std::string& execution_id);
Event stdout_text(const std::string& text);
Event stderr_text(const std::string& text);
/// `bundle` is a Jupyter MIME bundle; `text/plain` is renamed to `text`, other keys kept.
Event result(const nlohmann::json& mime_bundle);
Event execution_count(int64_t count);
Event status(const std::string& text);
/// `extra` (may be null) adds fields beside "error", such as the accounting of a command.
Event error(const std::string& ename, const std::string& evalue, const std::vector<std::string>& traceback,
            const nlohmann::json& extra = nullptr);
/// `extra` (may be null) adds fields such as duration_ms, cpu_time_ms, peak_memory_mb, exit_code.
Event execution_complete(int64_t execution_time_ms, const nlohmann::json& extra = nullptr);
/// Any other type: `fields` (an object) gets "type" and "timestamp" added.
Event custom(const std::string& type, nlohmann::json fields);
/// A stdout/stderr event whose text is given as an already-escaped JSON string literal
/// (quotes included, valid UTF-8): large kernel output is spliced in, never re-parsed.
Event stream_from_json_literal(bool is_stderr, std::string_view literal);

}  // namespace events

/// Compact JSON with invalid UTF-8 replaced, the one way events and bodies are serialised.
std::string dump_json(const nlohmann::json& j);

}  // namespace execd::exec
