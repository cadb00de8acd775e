#pragma once

#include <memory>

#include "exec/execution_registry.hpp"
#include "http/http_server.hpp"

namespace execd::api {

/// Any execution by id, whatever ran it (command, session run, code cell):
///   GET /executions/{id}          -> {"id","kind","started_at","done","last_event_id"}
///   GET /executions/{id}/events   -> SSE from the start, or after Last-Event-ID / ?after=N
///   GET /executions/{id}/events?format=json&after=N[&wait_ms=M]
///        -> {"events":[...], "cursor":N', "done":bool} for clients that poll instead of
///           holding a stream; waits up to wait_ms (default 0, at most 30000) for news.
void register_execution_routes(http::HttpServer& server, std::shared_ptr<exec::ExecutionRegistry> executions);

}  // namespace execd::api
