#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "http/http_server.hpp"
#include "isolation/capabilities.hpp"
#include "isolation/isolator.hpp"

namespace execd::api {

/// GET /capabilities: which isolation levels and limits this host enforces right now,
/// with a reason for each one it does not (and for a weak mechanism), plus the daemon's
/// defaults. The probe runs on the first request and is cached.
void register_capabilities_routes(http::HttpServer& server, std::shared_ptr<isolation::Isolator> isolator);

/// The daemon's Isolator from its flags (the defaults; validated by parse_config) with
/// fresh workspaces under `runtime_dir` (empty: $TMPDIR). Built once by the composition root.
std::shared_ptr<isolation::Isolator> make_isolator(const core::Config& config, const std::string& runtime_dir);

/// The response body: {"levels": {name: {supported, reason}}, "limits": {field:
/// {supported, mechanism, reason}}, "cgroup": {...}, "defaults": {...}}.
nlohmann::json capabilities_json(const isolation::Capabilities& caps, const isolation::Limits& defaults);

}  // namespace execd::api
