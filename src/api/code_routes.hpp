#pragma once

#include <memory>

#include "commands/command_runner.hpp"
#include "commands/session_manager.hpp"
#include "exec/execution_registry.hpp"
#include "http/http_server.hpp"
#include "http/webhook_sender.hpp"
#include "jupyter/context_manager.hpp"

namespace execd::api {

/// Code contexts over Jupyter kernels (OpenSandbox /code, compat-notes §5):
///   POST   /code/context {"language","cwd"?}   -> {"id","language","cwd"?}
///   GET    /code/contexts[?language=]          -> [{"id","language"}]
///   GET    /code/contexts/{id}                 -> {"id","language"}
///   DELETE /code/contexts/{id}                 ; DELETE /code/contexts?language=
///   POST   /code/contexts/{id}/restart         -> a fresh kernel, state lost
///   POST   /code {"code","context"?:{"id"?,"language"?},"timeout"?,"callback_url"?,
///          "callback_headers"?} -> SSE; without a context language or id the code runs as
///          a shell command; with callback_url the execution's result document is POSTed
///          there, signed, when the cell ends (api::attach_callback)
///   DELETE /code?id=                           -> interrupts the context's running cell
///                                                 (command and session ids as /command)
void register_code_routes(http::HttpServer& server, std::shared_ptr<jupyter::ContextManager> contexts,
                          std::shared_ptr<commands::CommandRunner> runner,
                          std::shared_ptr<commands::SessionManager> sessions,
                          std::shared_ptr<exec::ExecutionRegistry> executions,
                          std::shared_ptr<http::WebhookSender> callbacks);

}  // namespace execd::api
