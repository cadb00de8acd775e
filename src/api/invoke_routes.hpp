#pragma once

#include <memory>

#include "http/http_server.hpp"
#include "http/webhook_sender.hpp"
#include "invoke/invoker.hpp"

namespace execd::api {

/// Serverless-style handlers (issue 13):
///   POST /invoke {code, event?, language?, timeout? (ms, default 60000; 0: none), envs?,
///                 isolation and limit fields as on /command, callback_url?,
///                 callback_headers?, start? ("warm" default | "cold")}
///     -> 200 the result document (Invoker's), once the handler has ended
///     ?stream=true -> SSE: init, stdout/stderr lines, then one `invoke_result` event
///                     carrying the document
///   An invocation that outlives the wait (its timeout plus 10 s; one hour without a
///   timeout) is answered 202 {id, status: "running"}: its document arrives at
///   /executions/{id}/events.
void register_invoke_routes(http::HttpServer& server, std::shared_ptr<invoke::Invoker> invoker,
                            isolation::Isolator* isolator, std::shared_ptr<http::WebhookSender> callbacks);

}  // namespace execd::api
