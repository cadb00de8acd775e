#include "api/session_routes.hpp"

#include "api/isolation_fields.hpp"
#include "api/request_fields.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

using Method = http::HttpServer::Method;

core::Result<commands::SessionRunSpec> parse_run_spec(const httplib::Request& req) {
  auto body = http::parse_json_body(req);
  if (!body) return body.error();
  if (auto obj = require_object(*body); !obj) return obj.error();
  auto command = string_field(*body, "command");
  auto cwd = string_field(*body, "cwd");
  auto timeout = int_field(*body, "timeout", INT64_MIN, INT64_MAX);
  if (!command) return command.error();
  if (!cwd) return cwd.error();
  if (!timeout) return timeout.error();
  commands::SessionRunSpec spec;
  spec.command = command->value_or("");
  spec.cwd = cwd->value_or("");
  spec.timeout = std::chrono::milliseconds(timeout->value_or(0));
  return spec;
}

}  // namespace

void register_session_routes(http::HttpServer& server, std::shared_ptr<commands::SessionManager> sessions) {
  server.route(Method::post, R"(/session)", [sessions](const httplib::Request& req, httplib::Response& res) {
    auto body = http::parse_json_body(req, /*allow_empty=*/true);
    if (!body) return http::write_error(res, body.error());
    if (auto obj = require_object(*body); !obj) return http::write_error(res, obj.error());
    auto cwd = string_field(*body, "cwd");
    if (!cwd) return http::write_error(res, cwd.error());
    // The session's shell is started inside its isolation once; every run pays nothing more.
    auto limits = request_limits(*body, sessions->isolator().get());
    if (!limits) return http::write_error(res, limits.error());
    auto session = sessions->create(cwd->value_or(""), *limits);
    if (!session) return http::write_error(res, session.error());
    http::write_json(res, {{"session_id", (*session)->id()}});
  });

  server.route(Method::post, R"(/session/([^/]+)/run)",
               [&server, sessions](const httplib::Request& req, httplib::Response& res) {
                 auto spec = parse_run_spec(req);
                 if (!spec) return http::write_error(res, spec.error());
                 auto execution = sessions->run(req.matches[1], std::move(*spec));
                 if (!execution) return http::write_error(res, execution.error());
                 http::stream_events(res, (*execution)->log(), exec::Cursor{}, server.sse_options());
               });

  server.route(Method::del, R"(/session/([^/]+))", [sessions](const httplib::Request& req, httplib::Response& res) {
    if (auto r = sessions->remove(req.matches[1]); !r) return http::write_error(res, r.error());
    http::write_json(res, {{"session_id", std::string(req.matches[1])}, {"deleted", true}});
  });
}

}  // namespace execd::api
