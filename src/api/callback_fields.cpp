#include "api/callback_fields.hpp"

#include "api/request_fields.hpp"
#include "core/clock.hpp"
#include "core/json_parse.hpp"

namespace execd::api {

core::Result<std::optional<Callback>> parse_callback(const nlohmann::json& body) {
  auto url = string_field(body, "callback_url");
  if (!url) return url.error();
  auto headers = string_map_field(body, "callback_headers");
  if (!headers) return headers.error();
  if (!url->has_value()) {
    if (!headers->empty()) return core::make_error(core::Errc::invalid_argument, "field 'callback_headers' needs a callback_url");
    return std::optional<Callback>();
  }
  if (auto ok = http::WebhookSender::check_url(**url, "callback_url"); !ok) return ok.error();
  for (const auto& [k, v] : *headers) {
    const bool token = !k.empty() && k.find_first_of(" \t\r\n:()<>@,;\\\"/[]?={}") == std::string::npos;
    if (!token || v.find_first_of("\r\n") != std::string::npos) {
      return core::make_error(core::Errc::invalid_argument, "field 'callback_headers' has a malformed header: " + k.substr(0, 40));
    }
  }
  return std::optional<Callback>(Callback{**url, std::move(*headers)});
}

void attach_callback(const std::shared_ptr<exec::Execution>& execution, const Callback& callback,
                     const std::shared_ptr<http::WebhookSender>& sender) {
  std::weak_ptr<exec::Execution> weak = execution;
  execution->set_callback_state({{"url", callback.url}, {"state", "waiting"}, {"attempts", 0}});
  execution->when_finished([weak, callback, sender](const exec::Execution& e, const exec::Event& terminal) {
    auto parsed = core::parse_json(terminal.json);
    nlohmann::json doc;
    if (terminal.type == "invoke_result" && parsed) {
      doc = std::move(parsed).value();
      doc.erase("type");
      doc.erase("timestamp");
    } else {
      const auto o = e.outcome();
      doc = {{"id", e.id()},
             {"kind", e.kind()},
             {"status", o ? o->status() : "ended"},
             {"started_at", core::rfc3339_nano(e.started_at())},
             {"finished_at", o ? core::rfc3339_nano(o->finished_at) : std::string()},
             {"metrics", o ? o->metrics : nlohmann::json::object()},
             {"terminal", parsed ? std::move(parsed).value() : nlohmann::json(nullptr)}};
    }
    std::vector<std::pair<std::string, std::string>> headers(callback.headers.begin(), callback.headers.end());
    sender->deliver(callback.url, std::move(headers), exec::dump_json(doc), [weak](const nlohmann::json& state) {
      if (auto x = weak.lock()) x->set_callback_state(state);
    });
  });
}

}  // namespace execd::api
