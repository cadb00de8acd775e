#pragma once

#include <memory>

#include "commands/session_manager.hpp"
#include "http/http_server.hpp"

namespace execd::api {

/// Bash sessions (OpenSandbox /session, compat-notes §4):
///   POST   /session              {"cwd"?} -> {"session_id"}
///   POST   /session/{id}/run     {"command","cwd"?,"timeout"?} -> SSE: init (the session
///                                id), stdout lines (stderr merged), one terminal event
///   DELETE /session/{id}         -> ends the shell and everything it started
void register_session_routes(http::HttpServer& server, std::shared_ptr<commands::SessionManager> sessions);

}  // namespace execd::api
