#include "api/execution_routes.hpp"

#include <charconv>

#include "core/clock.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

constexpr int64_t kMaxPollWaitMs = 30000;
constexpr size_t kMaxPollEvents = 1000;

core::Result<int64_t> int_param(const httplib::Request& req, const std::string& name, int64_t fallback) {
  if (!req.has_param(name)) return fallback;
  const std::string text = req.get_param_value(name);
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || v < 0) {
    return core::make_error(core::Errc::invalid_argument,
                            "query parameter '" + name + "' must be a non-negative integer, got '" + text + "'");
  }
  return v;
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
                 http::write_json(res, {{"id", e->id()},
                                        {"kind", e->kind()},
                                        {"started_at", core::rfc3339_nano(e->started_at())},
                                        {"done", e->log()->is_closed()},
                                        {"last_event_id", e->log()->last_seq()}});
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
        if (req.get_param_value("format") != "json") {
          http::stream_events(res, e->log(), exec::Cursor{http::resume_after(req)}, server.sse_options());
          return;
        }
        auto after = int_param(req, "after", 0);
        auto wait_ms = int_param(req, "wait_ms", 0);
        if (!after) return http::write_error(res, after.error());
        if (!wait_ms) return http::write_error(res, wait_ms.error());
        exec::Cursor cursor{static_cast<uint64_t>(*after)};
        auto batch = e->log()->read(cursor, kMaxPollEvents, std::chrono::milliseconds(std::min(*wait_ms, kMaxPollWaitMs)));
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
