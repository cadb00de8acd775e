#include "api/invoke_routes.hpp"

#include "api/callback_fields.hpp"
#include "api/isolation_fields.hpp"
#include "api/request_fields.hpp"
#include "http/json_io.hpp"

namespace execd::api {

namespace {

constexpr std::chrono::milliseconds kDefaultTimeout{60000};
constexpr std::chrono::seconds kWaitGrace{10};
constexpr std::chrono::hours kWaitWithoutTimeout{1};

core::Result<invoke::InvokeSpec> parse_invoke_spec(const nlohmann::json& body) {
  if (auto obj = require_object(body); !obj) return obj.error();
  invoke::InvokeSpec spec;
  auto code = string_field(body, "code");
  if (!code) return code.error();
  if (!code->has_value() || (*code)->empty()) {
    return core::make_error(core::Errc::invalid_argument, "field 'code' is required and must not be empty");
  }
  spec.code = **code;
  auto language = string_field(body, "language");
  if (!language) return language.error();
  auto lang = invoke::parse_language(language->value_or("python"));
  if (!lang) return lang.error();
  spec.language = *lang;
  auto timeout = int_field(body, "timeout", 0, INT64_MAX / 1000000);
  if (!timeout) return timeout.error();
  spec.timeout = timeout->has_value() ? std::chrono::milliseconds(**timeout) : kDefaultTimeout;
  auto envs = string_map_field(body, "envs");
  if (!envs) return envs.error();
  spec.envs = std::move(*envs);
  if (auto e = body.find("event"); e != body.end()) spec.event = *e;
  auto start = string_field(body, "start");
  if (!start) return start.error();
  if (start->has_value()) {
    auto mode = invoke::parse_start_mode(**start);
    if (!mode) return mode.error();
    spec.start = *mode;
  }
  return spec;
}

}  // namespace

void register_invoke_routes(http::HttpServer& server, std::shared_ptr<invoke::Invoker> invoker,
                            isolation::Isolator* isolator, std::shared_ptr<http::WebhookSender> callbacks) {
  server.route(http::HttpServer::Method::post, R"(/invoke)",
               [&server, invoker, isolator, callbacks](const httplib::Request& req, httplib::Response& res) {
    auto body = http::parse_json_body(req);
    if (!body) return http::write_error(res, body.error());
    auto spec = parse_invoke_spec(*body);
    if (!spec) return http::write_error(res, spec.error());
    auto limits = request_limits(*body, isolator);
    if (!limits) return http::write_error(res, limits.error());
    auto callback = parse_callback(*body);
    if (!callback) return http::write_error(res, callback.error());
    const std::string stream = req.get_param_value("stream");
    if (req.has_param("stream") && stream != "true" && stream != "false") {
      return http::write_error(res, core::make_error(core::Errc::invalid_argument, "query parameter 'stream' must be true or false"));
    }
    const auto timeout = spec->timeout;
    auto execution = invoker->start(std::move(*spec), *limits);
    if (!execution) return http::write_error(res, execution.error());
    if (*callback) attach_callback(*execution, **callback, callbacks);
    if (stream == "true") {
      http::stream_events(res, (*execution)->log(), exec::Cursor{}, server.sse_options());
      return;
    }
    const auto wait = timeout.count() > 0 ? timeout + std::chrono::duration_cast<std::chrono::milliseconds>(kWaitGrace)
                                          : std::chrono::duration_cast<std::chrono::milliseconds>(kWaitWithoutTimeout);
    auto doc = invoke::Invoker::wait(**execution, wait);
    if (!doc) {
      if (doc.error().code == core::Errc::unavailable) {
        return http::write_json(res, {{"id", (*execution)->id()}, {"status", "running"}}, 202);
      }
      return http::write_error(res, doc.error());
    }
    http::write_json(res, *doc);
  });
}

}  // namespace execd::api
