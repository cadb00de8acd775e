#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "exec/execution.hpp"
#include "http/webhook_sender.hpp"

namespace execd::api {

/// Where to POST an execution's result when it ends (`callback_url`,
/// `callback_headers` in /invoke, /command and /code bodies).
struct Callback {
  std::string url;
  std::map<std::string, std::string> headers;
};

/// nullopt when the body names no callback_url; invalid_argument naming the field for a
/// malformed URL or headers (checked at submit time, before anything runs).
core::Result<std::optional<Callback>> parse_callback(const nlohmann::json& body);

/// Delivers `execution`'s result document to `callback` once it ends, through `sender`
/// (null: not_supported), and keeps the delivery state on the execution (shown by
/// GET /executions/{id}). The document: an invocation's result as /invoke answers it;
/// for others {id, kind, status, started_at, finished_at, metrics, terminal event}.
void attach_callback(const std::shared_ptr<exec::Execution>& execution, const Callback& callback,
                     const std::shared_ptr<http::WebhookSender>& sender);

}  // namespace execd::api
