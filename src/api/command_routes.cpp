#include "api/command_routes.hpp"

#include <charconv>
#include <thread>

#include "api/callback_fields.hpp"
#include "api/isolation_fields.hpp"
#include "api/request_fields.hpp"
#include "core/clock.hpp"
#include "exec/event.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

using Method = http::HttpServer::Method;

// One logs response carries at most this much; the cursor lets the client page on.
constexpr size_t kMaxLogChunk = 8 * 1024 * 1024;
// How long POST /command/{id}/stdin waits for a command that is not reading.
constexpr std::chrono::seconds kStdinWriteTimeout{10};
// How long DELETE /command waits for the group to be gone before answering anyway.
constexpr std::chrono::seconds kInterruptWaitCap{10};

core::Result<commands::CommandSpec> parse_command_spec(const nlohmann::json* body) {
  if (auto obj = require_object(*body); !obj) return obj.error();
  commands::CommandSpec spec;
  auto command = string_field(*body, "command");
  if (!command) return command.error();
  if (!command->has_value() || (*command)->empty()) {
    return core::make_error(core::Errc::invalid_argument, "field 'command' is required and must not be empty");
  }
  spec.command = **command;
  if (spec.command.find('\0') != std::string::npos) {
    return core::make_error(core::Errc::invalid_argument, "field 'command' must not contain NUL bytes");
  }
  auto cwd = string_field(*body, "cwd");
  auto background = bool_field(*body, "background");
  auto timeout = int_field(*body, "timeout", INT64_MIN, INT64_MAX);
  auto uid = int_field(*body, "uid", 0, UINT32_MAX);
  auto gid = int_field(*body, "gid", 0, UINT32_MAX);
  auto envs = string_map_field(*body, "envs");
  auto stdin_data = string_field(*body, "stdin");
  auto stdin_open = bool_field(*body, "stdin_open");
  if (!cwd) return cwd.error();
  if (!background) return background.error();
  if (!timeout) return timeout.error();
  if (!uid) return uid.error();
  if (!gid) return gid.error();
  if (!envs) return envs.error();
  if (!stdin_data) return stdin_data.error();
  if (!stdin_open) return stdin_open.error();
  spec.cwd = cwd->value_or("");
  spec.background = background->value_or(false);
  spec.timeout = std::chrono::milliseconds(timeout->value_or(0));
  if (*uid) spec.uid = static_cast<uint32_t>(**uid);
  if (*gid) spec.gid = static_cast<uint32_t>(**gid);
  spec.envs = std::move(*envs);
  spec.stdin_data = stdin_data->value_or("");
  spec.stdin_open = stdin_open->value_or(false);
  return spec;
}

nlohmann::json status_json(const commands::CommandStatus& s) {
  nlohmann::json j = {{"id", s.id},
                      {"content", s.content},
                      {"running", s.running},
                      {"started_at", core::rfc3339_nano(s.started_at)}};
  if (s.exit_code) j["exit_code"] = *s.exit_code;
  if (!s.error.empty()) j["error"] = s.error;
  if (s.finished_at) j["finished_at"] = core::rfc3339_nano(*s.finished_at);
  return j;
}

core::Error command_not_found(const std::string& id) {
  return core::make_error(core::Errc::not_found, "command not found: " + id);
}

// compat-notes §3.3: an absent or unparsable cursor reads from the start.
uint64_t cursor_param(const httplib::Request& req) {
  const std::string text = req.get_param_value("cursor");
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  return (ec == std::errc() && p == text.data() + text.size()) ? v : 0;
}

// Background starts answer with a stream of their own: init, then complete at once
// (what clients of the contract wait for); the command's real events stay replayable
// at /command/{id}/events.
void write_background_ack(httplib::Response& res, const std::string& id) {
  exec::Event init = exec::events::init(id);
  init.seq = 1;
  // Its id repeats init's: a client that later resumes the command's real stream with
  // Last-Event-ID 1 gets all of its output (the ack's "complete" is not in that log).
  exec::Event done = exec::events::execution_complete(0);
  done.seq = 1;
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_content(http::format_sse_event(init) + http::format_sse_event(done), "text/event-stream");
}

/// Polls `running` until it is false or kInterruptWaitCap has passed: an interrupted
/// execution is answered once it has ended, but never after a process that ignores
/// every signal we may send.
template <typename Running>
void wait_while(const Running& running) {
  const auto deadline = std::chrono::steady_clock::now() + kInterruptWaitCap;
  while (running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

void interrupt_command_or_session(const std::string& id, httplib::Response& res, commands::CommandRunner& runner,
                                  commands::SessionManager& sessions, const exec::ExecutionRegistry& executions) {
  // An invocation is interrupted by its owner (it alone knows its process, warm or cold,
  // and records that it was interrupted); answered once it has ended, as a command is.
  const auto execution = executions.find(id);
  if (execution && execution->has_interrupter()) {
    if (auto r = execution->interrupt(); !r) return http::write_error(res, r.error());
    wait_while([&] { return !execution->outcome(); });
    const auto outcome = execution->outcome();
    return http::write_json(res, {{"id", id},
                                  {"kind", execution->kind()},
                                  {"running", !outcome},
                                  {"status", outcome ? outcome->status() : std::string("running")}});
  }
  if (!runner.find(id) && sessions.contains(id)) {
    if (auto r = sessions.remove(id); !r) return http::write_error(res, r.error());
    return http::write_json(res, {{"session_id", id}, {"deleted", true}});
  }
  if (execution && execution->outcome() && !runner.find(id)) {  // an execution (an invocation) that has ended
    return http::write_error(res, core::make_error(core::Errc::conflict, "execution " + id + " is not running"));
  }
  if (auto r = runner.interrupt(id); !r) return http::write_error(res, r.error());
  // Answer once the command has stopped (compat: the DELETE returns when the group is
  // gone), but never hang on a process that ignores every signal we may send.
  auto cmd = runner.find(id);
  wait_while([&] { return cmd && cmd->is_running(); });
  http::write_json(res, cmd ? status_json(cmd->status()) : nlohmann::json{{"id", id}});
}

void register_command_routes(http::HttpServer& server, std::shared_ptr<commands::CommandRunner> runner,
                             std::shared_ptr<commands::SessionManager> sessions,
                             std::shared_ptr<exec::ExecutionRegistry> executions,
                             std::shared_ptr<http::WebhookSender> callbacks) {
  server.route(Method::post, R"(/command)", [&server, runner, callbacks](const httplib::Request& req, httplib::Response& res) {
    auto body = http::parse_json_body(req);
    if (!body) return http::write_error(res, body.error());
    auto spec = parse_command_spec(&*body);
    if (!spec) return http::write_error(res, spec.error());
    auto limits = request_limits(*body, runner->isolator().get());
    if (!limits) return http::write_error(res, limits.error());
    auto callback = parse_callback(*body);
    if (!callback) return http::write_error(res, callback.error());
    auto cmd = runner->start(std::move(*spec), *limits);
    if (!cmd) return http::write_error(res, cmd.error());
    if (*callback) attach_callback((*cmd)->execution(), **callback, callbacks);
    if ((*cmd)->is_background()) return write_background_ack(res, (*cmd)->id());
    // The stream only reads the log: a client that goes away leaves the command running.
    http::stream_events(res, (*cmd)->execution()->log(), exec::Cursor{}, server.sse_options());
  });

  server.route(Method::get, R"(/command/status/([^/]+))", [runner](const httplib::Request& req, httplib::Response& res) {
    auto cmd = runner->find(req.matches[1]);
    if (!cmd) return http::write_error(res, command_not_found(req.matches[1]));
    http::write_json(res, status_json(cmd->status()));
  });

  server.route(Method::get, R"(/command/([^/]+)/logs)", [runner](const httplib::Request& req, httplib::Response& res) {
    auto cmd = runner->find(req.matches[1]);
    if (!cmd) return http::write_error(res, command_not_found(req.matches[1]));
    const uint64_t cursor = cursor_param(req);
    std::string bytes = cmd->output().read(cursor, kMaxLogChunk);
    const uint64_t next = std::max(cursor, cursor + bytes.size());
    res.status = 200;
    res.set_header("EXECD-COMMANDS-TAIL-CURSOR", std::to_string(next));
    res.set_content(std::move(bytes), "text/plain; charset=utf-8");
  });

  server.route(Method::get, R"(/command/([^/]+)/events)",
               [&server, runner](const httplib::Request& req, httplib::Response& res) {
                 auto cmd = runner->find(req.matches[1]);
                 if (!cmd) return http::write_error(res, command_not_found(req.matches[1]));
                 auto after = http::resume_after(req);
                 if (!after) return http::write_error(res, after.error());
                 http::stream_events(res, cmd->execution()->log(), exec::Cursor{*after}, server.sse_options());
               });

  server.route(Method::post, R"(/command/([^/]+)/stdin)", [runner](const httplib::Request& req, httplib::Response& res) {
    auto cmd = runner->find(req.matches[1]);
    if (!cmd) return http::write_error(res, command_not_found(req.matches[1]));
    if (!req.body.empty()) {
      if (auto w = cmd->write_stdin(req.body, kStdinWriteTimeout); !w) return http::write_error(res, w.error());
    }
    const std::string close = req.get_param_value("close");
    if (close == "true" || close == "1") {
      if (auto c = cmd->close_stdin(); !c) return http::write_error(res, c.error());
    }
    http::write_json(res, {{"id", cmd->id()}, {"written", req.body.size()}});
  });

  server.route(Method::del, R"(/command)", [runner, sessions, executions](const httplib::Request& req, httplib::Response& res) {
    auto id = required_query(req, "id");
    if (!id) return http::write_error(res, id.error());
    interrupt_command_or_session(*id, res, *runner, *sessions, *executions);
  });
}

}  // namespace execd::api
