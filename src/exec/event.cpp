#include "exec/event.hpp"

#include "core/clock.hpp"

namespace execd::exec {

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace events {

Event custom(const std::string& type, nlohmann::json fields) {
  if (!fields.is_object()) fields = nlohmann::json::object();
  fields["type"] = type;
  fields["timestamp"] = core::unix_ms();
  return Event{0, type, dump_json(fields)};
}

Event stream_from_json_literal(bool is_stderr, std::string_view literal) {
  // Same shape and key order as custom() renders: text, timestamp, type.
  const char* type = is_stderr ? "stderr" : "stdout";
  std::string json;
  json.reserve(literal.size() + 64);
  json += "{\"text\":";
  json += literal;
  json += ",\"timestamp\":";
  json += std::to_string(core::unix_ms());
  json += ",\"type\":\"";
  json += type;
  json += "\"}";
  return Event{0, type, std::move(json)};
}

Event init(const std::string& execution_id) { return custom("init", {{"text", execution_id}}); }

Event stdout_text(const std::string& text) { return custom("stdout", {{"text", text}}); }

Event stderr_text(const std::string& text) { return custom("stderr", {{"text", text}}); }

Event result(const nlohmann::json& mime_bundle) {
  nlohmann::json results = nlohmann::json::object();
  if (mime_bundle.is_object()) {
    for (const auto& [k, v] : mime_bundle.items()) results[k == "text/plain" ? "text" : k] = v;
  }
  return custom("result", {{"results", std::move(results)}});
}

Event execution_count(int64_t count) { return custom("execution_count", {{"execution_count", count}}); }

Event status(const std::string& text) { return custom("status", {{"text", text}}); }

Event error(const std::string& ename, const std::string& evalue, const std::vector<std::string>& traceback,
            const nlohmann::json& extra) {
  nlohmann::json fields = extra.is_object() ? extra : nlohmann::json::object();
  fields["error"] = {{"ename", ename}, {"evalue", evalue}, {"traceback", traceback}};
  return custom("error", std::move(fields));
}

Event execution_complete(int64_t execution_time_ms, const nlohmann::json& extra) {
  nlohmann::json fields = extra.is_object() ? extra : nlohmann::json::object();
  // The contract omits a zero execution_time (Go's omitempty); clients treat absent as 0.
  if (execution_time_ms > 0) fields["execution_time"] = execution_time_ms;
  return custom("execution_complete", std::move(fields));
}

}  // namespace events
}  // namespace execd::exec
