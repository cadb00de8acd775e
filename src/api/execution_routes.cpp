#include "api/execution_routes.hpp"

#include <optional>

#include "api/query_params.hpp"

#include "core/clock.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

constexpr uint64_t kMaxPollWaitMs = 30000;
constexpr size_t kMaxPollEvents = 1000;

// The page's start: `after`, or `cursor` (the name of the field a JSON page answers with,
// so clients pass it back under that name); both at once is ambiguous.
core::Result<std::optional<uint64_t>> after_param(const httplib::Request& req) {
  auto after = uint_query(req, "after");
  if (!after) return after.error();
  auto cursor = uint_query(req, "cursor");
  if (!cursor) return cursor.error();
  if (*after && *cursor) {
    return core::make_error(core::Errc::invalid_argument, "give either query parameter 'after' or 'cursor', not both");
  }
  return *after ? *after : *cursor;
}

constexpr uint64_t kMaxListed = 1000;
constexpr const char* kKinds[] = {"command", "background-command", "session-run", "code", "invocation"};
constexpr const char* kStatuses[] = {"running", "success", "failed", "timeout", "killed", "ended"};

nlohmann::json summary_json(const exec::Execution& e) {
  nlohmann::json j = {{"id", e.id()},
                      {"kind", e.kind()},
                      {"started_at", core::rfc3339_nano(e.started_at())},
                      {"done", e.log()->is_closed()},
                      {"last_event_id", e.log()->last_seq()}};
  if (auto o = e.outcome()) {
    j["status"] = o->status();
    j["finished_at"] = core::rfc3339_nano(o->finished_at);
    j["metrics"] = o->metrics;
  } else {
    j["status"] = "running";
  }
  if (auto cb = e.callback_state(); !cb.is_null()) j["callback"] = std::move(cb);
  return j;
}

// A query parameter that must be one of `allowed` when present.
template <size_t N>
core::Result<std::string> one_of(const httplib::Request& req, const std::string& name, const char* const (&allowed)[N]) {
  if (!req.has_param(name)) return std::string();
  const std::string v = req.get_param_value(name);
  std::string list;
  for (const char* a : allowed) {
    if (v == a) return v;
    list += list.empty() ? a : std::string(", ") + a;
  }
  return core::make_error(core::Errc::invalid_argument, "query parameter '" + name + "' must be one of " + list + ", got '" + v.substr(0, 40) + "'");
}

}  // namespace

void register_execution_routes(http::HttpServer& server, std::shared_ptr<exec::ExecutionRegistry> executions) {
  server.route(http::HttpServer::Method::get, R"(/executions/([^/]+))",
               [executions](const httplib::Request& req, httplib::Response& res) {
                 auto e = executions->find(req.matches[1]);
                 if (!e) {
                   http::write_error(res, core::make_error(core::Errc::not_found,
                                                           "execution not found: " + std::string(req.matches[1])));
                   return;
                 }
                 http::write_json(res, summary_json(*e));
               });

  // Recent executions, newest first (issue 13's history), within the retention.
  server.route(http::HttpServer::Method::get, R"(/executions)",
               [executions](const httplib::Request& req, httplib::Response& res) {
                 exec::ExecutionRegistry::ListQuery q;
                 auto kind = one_of(req, "kind", kKinds);
                 if (!kind) return http::write_error(res, kind.error());
                 auto status = one_of(req, "status", kStatuses);
                 if (!status) return http::write_error(res, status.error());
                 auto limit = uint_query(req, "limit", 1, kMaxListed);
                 if (!limit) return http::write_error(res, limit.error());
                 if (req.has_param("after") && req.get_param_value("after").empty()) {
                   return http::write_error(res, core::make_error(core::Errc::invalid_argument, "query parameter 'after' must be an execution id"));
                 }
                 q.kind = *kind;
                 q.status = *status;
                 q.limit = limit->value_or(100);
                 q.after = req.get_param_value("after");
                 auto listed = executions->list(q);
                 if (!listed) return http::write_error(res, listed.error());
                 nlohmann::json items = nlohmann::json::array();
                 for (const auto& e : *listed) items.push_back(summary_json(*e));
                 nlohmann::json body = {{"items", items}};
                 // The next page starts after the last item, when the page is full.
                 body["next_after"] = listed->size() == q.limit && !listed->empty() ? nlohmann::json(listed->back()->id()) : nlohmann::json(nullptr);
                 http::write_json(res, body);
               });

  server.route(
      http::HttpServer::Method::get, R"(/executions/([^/]+)/events)",
      [&server, executions](const httplib::Request& req, httplib::Response& res) {
        auto e = executions->find(req.matches[1]);
        if (!e) {
          http::write_error(res,
                            core::make_error(core::Errc::not_found, "execution not found: " + std::string(req.matches[1])));
          return;
        }
        // Every numeric parameter is checked whatever the format: a bad one is a 400
        // naming it, never read as absent.
        auto after = after_param(req);
        if (!after) return http::write_error(res, after.error());
        auto wait_ms = uint_query(req, "wait_ms");
        if (!wait_ms) return http::write_error(res, wait_ms.error());
        auto limit = uint_query(req, "limit", 1, kMaxPollEvents);
        if (!limit) return http::write_error(res, limit.error());
        const std::string format = req.get_param_value("format");
        if (req.has_param("format") && format != "json") {
          return http::write_error(res, core::make_error(core::Errc::invalid_argument,
                                                         "query parameter 'format' must be 'json' (or absent for SSE), got '" +
                                                             format.substr(0, 40) + "'"));
        }
        if (format != "json") {
          const bool has_header = !req.get_header_value("Last-Event-ID").empty();
          auto from_header = http::resume_after(req);
          if (has_header && !from_header) return http::write_error(res, from_header.error());
          const uint64_t start = has_header ? *from_header : after->value_or(0);
          http::stream_events(res, e->log(), exec::Cursor{start}, server.sse_options());
          return;
        }
        exec::Cursor cursor{after->value_or(0)};
        const auto wait = std::chrono::milliseconds(std::min<uint64_t>(wait_ms->value_or(0), kMaxPollWaitMs));
        auto batch = e->log()->read(cursor, limit->value_or(kMaxPollEvents), wait);
        // Events are stored as their wire JSON; splice them into the array unparsed.
        std::string body = "{\"events\":[";
        for (size_t i = 0; i < batch.events.size(); ++i) {
          if (i > 0) body += ',';
          body += batch.events[i].json;
        }
        body += "],\"cursor\":" + std::to_string(cursor.after) + ",\"done\":" + (batch.end ? "true" : "false") + "}";
        res.status = 200;
        res.set_content(body, "application/json");
      });
}

}  // namespace execd::api
