#include "api/code_routes.hpp"

#include "api/callback_fields.hpp"
#include "api/command_routes.hpp"
#include "api/isolation_fields.hpp"
#include "api/request_fields.hpp"
#include "core/utf8.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

using Method = http::HttpServer::Method;
constexpr const char* kBash = "bash";

nlohmann::json context_json(const jupyter::CodeContext& c) {
  nlohmann::json j = {{"id", c.id()}, {"language", c.language()}};
  if (!c.cwd().empty()) j["cwd"] = c.cwd();
  return j;
}


}  // namespace

void register_code_routes(http::HttpServer& server, std::shared_ptr<jupyter::ContextManager> contexts,
                          std::shared_ptr<commands::CommandRunner> runner,
                          std::shared_ptr<commands::SessionManager> sessions,
                          std::shared_ptr<exec::ExecutionRegistry> executions,
                          std::shared_ptr<http::WebhookSender> callbacks) {
  server.route(Method::post, R"(/code/context)", [contexts, sessions](const httplib::Request& req, httplib::Response& res) {
    auto body = http::parse_json_body(req);
    if (!body) return http::write_error(res, body.error());
    if (auto o = require_object(*body); !o) return http::write_error(res, o.error());
    auto language = string_field(*body, "language");
    auto cwd = string_field(*body, "cwd");
    if (!language) return http::write_error(res, language.error());
    if (!cwd) return http::write_error(res, cwd.error());
    // The same isolation and limit fields as /command and /session, for the kernel.
    auto limits = request_limits(*body, contexts->isolator().get());
    if (!limits) return http::write_error(res, limits.error());
    if (language->value_or("") == kBash) {
      auto session = sessions->create(cwd->value_or(""), *limits);
      if (!session) return http::write_error(res, session.error());
      nlohmann::json j = {{"id", (*session)->id()}, {"language", kBash}};
      if (cwd->has_value()) j["cwd"] = **cwd;
      return http::write_json(res, j);
    }
    auto ctx = contexts->create(language->value_or(""), cwd->value_or(""), *limits);
    if (!ctx) return http::write_error(res, ctx.error());
    http::write_json(res, context_json(**ctx));
  });

  server.route(Method::get, R"(/code/contexts)", [contexts, sessions](const httplib::Request& req, httplib::Response& res) {
    const std::string language = req.get_param_value("language");
    nlohmann::json out = nlohmann::json::array();
    for (const auto& c : contexts->list(language)) out.push_back(context_json(*c));
    if (language.empty() || language == kBash) {
      for (const auto& id : sessions->ids()) out.push_back({{"id", id}, {"language", kBash}});
    }
    http::write_json(res, out);
  });

  server.route(Method::get, R"(/code/contexts/([^/]+))", [contexts, sessions](const httplib::Request& req, httplib::Response& res) {
    if (sessions->contains(req.matches[1])) return http::write_json(res, {{"id", std::string(req.matches[1])}, {"language", kBash}});
    auto c = contexts->find(req.matches[1]);
    if (!c) return http::write_error(res, core::make_error(core::Errc::context_not_found, "context " + std::string(req.matches[1]) + " not found"));
    http::write_json(res, context_json(*c));
  });

  server.route(Method::del, R"(/code/contexts/([^/]+))", [contexts, sessions](const httplib::Request& req, httplib::Response& res) {
    if (sessions->contains(req.matches[1])) {
      if (auto r = sessions->remove(req.matches[1]); !r) return http::write_error(res, r.error());
      return http::write_json(res, nlohmann::json::object());
    }
    if (auto r = contexts->remove(req.matches[1]); !r) return http::write_error(res, r.error());
    http::write_json(res, nlohmann::json::object());
  });

  server.route(Method::del, R"(/code/contexts)", [contexts, sessions](const httplib::Request& req, httplib::Response& res) {
    auto language = required_query(req, "language");
    if (!language) return http::write_error(res, language.error());
    size_t deleted = 0;
    if (*language == kBash) {
      for (const auto& id : sessions->ids()) deleted += sessions->remove(id) ? 1 : 0;
    } else {
      deleted = contexts->remove_language(*language);
    }
    http::write_json(res, {{"deleted", deleted}});
  });

  server.route(Method::post, R"(/code/contexts/([^/]+)/restart)", [contexts](const httplib::Request& req, httplib::Response& res) {
    auto c = contexts->find(req.matches[1]);
    if (!c) return http::write_error(res, core::make_error(core::Errc::context_not_found, "context " + std::string(req.matches[1]) + " not found"));
    c->request_restart();
    http::write_json(res, context_json(*c));
  });

  server.route(Method::post, R"(/code)", [&server, contexts, runner, sessions, callbacks](const httplib::Request& req, httplib::Response& res) {
    auto body = http::parse_json_body(req);
    if (!body) return http::write_error(res, body.error());
    if (auto o = require_object(*body); !o) return http::write_error(res, o.error());
    auto code = string_field(*body, "code");
    auto timeout = int_field(*body, "timeout", INT64_MIN, INT64_MAX);
    if (!code) return http::write_error(res, code.error());
    if (!timeout) return http::write_error(res, timeout.error());
    if (!code->has_value() || (*code)->empty()) {
      return http::write_error(res, core::make_error(core::Errc::invalid_argument, "field 'code' is required and must not be empty"));
    }
    if (!core::valid_utf8(**code)) return http::write_error(res, core::make_error(core::Errc::invalid_argument, "field 'code' is not valid UTF-8"));
    // The cell's result POSTed when it ends (issue 13), checked before anything runs.
    auto callback = parse_callback(*body);
    if (!callback) return http::write_error(res, callback.error());
    auto with_callback = [&](const std::shared_ptr<exec::Execution>& execution) {
      if (*callback) attach_callback(execution, **callback, callbacks);
      return execution->log();
    };
    std::string id, language;
    if (auto it = body->find("context"); it != body->end() && !it->is_null()) {
      if (!it->is_object()) return http::write_error(res, core::make_error(core::Errc::invalid_argument, "field 'context' must be an object"));
      auto i = string_field(*it, "id");
      auto l = string_field(*it, "language");
      if (!i) return http::write_error(res, i.error());
      if (!l) return http::write_error(res, l.error());
      id = i->value_or("");
      language = l->value_or("");
    }
    if (id.empty() && language.empty()) {
      // The contract: code without a language is a foreground shell command.
      commands::CommandSpec spec;
      spec.command = **code;
      spec.timeout = std::chrono::milliseconds(timeout->value_or(0));
      auto cmd = runner->start(std::move(spec));
      if (!cmd) return http::write_error(res, cmd.error());
      return http::stream_events(res, with_callback((*cmd)->execution()), exec::Cursor{}, server.sse_options());
    }
    // bash contexts are native bash sessions: same events, state kept in one shell.
    if ((id.empty() && language == kBash) || (!id.empty() && sessions->contains(id))) {
      std::string sid = id;
      if (sid.empty()) {
        auto d = sessions->default_session();
        if (!d) return http::write_error(res, d.error());
        sid = *d;
      }
      commands::SessionRunSpec spec;
      spec.command = **code;
      spec.timeout = std::chrono::milliseconds(timeout->value_or(0));
      auto run = sessions->run(sid, std::move(spec));
      if (!run) return http::write_error(res, run.error());
      return http::stream_events(res, with_callback(*run), exec::Cursor{}, server.sse_options());
    }
    auto execution = contexts->run(**code, id, language, std::chrono::milliseconds(timeout->value_or(0)));
    if (!execution) return http::write_error(res, execution.error());
    http::stream_events(res, with_callback(*execution), exec::Cursor{}, server.sse_options());
  });

  server.route(Method::del, R"(/code)", [contexts, runner, sessions, executions](const httplib::Request& req, httplib::Response& res) {
    auto id = required_query(req, "id");
    if (!id) return http::write_error(res, id.error());
    if (auto c = contexts->find(*id)) {
      if (auto r = c->interrupt(); !r) return http::write_error(res, r.error());
      return http::write_json(res, {{"id", *id}, {"interrupted", true}});
    }
    interrupt_command_or_session(*id, res, *runner, *sessions, *executions);
  });
}

}  // namespace execd::api
