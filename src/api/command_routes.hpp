#pragma once

#include <memory>

#include "commands/command_runner.hpp"
#include "commands/session_manager.hpp"
#include "exec/execution_registry.hpp"
#include "http/http_server.hpp"
#include "http/webhook_sender.hpp"

namespace execd::api {

/// Shell commands (OpenSandbox /command, compat-notes §3):
///   POST   /command                 -> SSE: init, stdout/stderr lines, one terminal event;
///                                      background: init + execution_complete at once
///   GET    /command/status/{id}     -> {"id","content","running","exit_code"?,"error"?,
///                                       "started_at","finished_at"?}
///   GET    /command/{id}/logs       -> raw output from ?cursor=N (bytes), next cursor in
///                                      EXECD-COMMANDS-TAIL-CURSOR
///   GET    /command/{id}/events     -> SSE replay from the start or after Last-Event-ID
///   POST   /command/{id}/stdin      -> appends the body to stdin (?close=true closes after)
///   DELETE /command?id=             -> interrupts (SIGINT, SIGTERM, SIGKILL to the group);
///                                      a bash session id ends that session (compat §3.4);
///                                      an invocation's id (warm or cold) interrupts it
///                                      the same way: {"id","kind","running","status"}
/// A `callback_url` (+ `callback_headers`) in the body of POST /command gets the
/// command's result POSTed there when it ends (api::attach_callback).
void register_command_routes(http::HttpServer& server, std::shared_ptr<commands::CommandRunner> runner,
                             std::shared_ptr<commands::SessionManager> sessions,
                             std::shared_ptr<exec::ExecutionRegistry> executions,
                             std::shared_ptr<http::WebhookSender> callbacks);

/// DELETE /command?id= (and DELETE /code?id= for ids that are not code contexts):
/// interrupts an execution whose owner set an interrupter (an invocation), or a command,
/// or ends a bash session.
void interrupt_command_or_session(const std::string& id, httplib::Response& res, commands::CommandRunner& runner,
                                  commands::SessionManager& sessions, const exec::ExecutionRegistry& executions);

}  // namespace execd::api
