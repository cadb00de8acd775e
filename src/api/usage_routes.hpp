#pragma once

#include <memory>

#include "http/http_server.hpp"

namespace execd::files {
class DiskQuota;
}

namespace execd::api {

/// GET /files/usage -> {"root", "used", "quota"}: bytes in use under the quota's root, as
/// tracked by the writers (no walk per request). Without --disk-quota: 501.
void register_usage_routes(http::HttpServer& server, std::shared_ptr<files::DiskQuota> quota);

}  // namespace execd::api
