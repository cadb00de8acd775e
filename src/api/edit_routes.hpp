#pragma once

#include <memory>

#include "files/file_service.hpp"
#include "http/http_server.hpp"

namespace execd::files {
class DiskQuota;
}

namespace execd::api {

/// Exact edits, the way coding agents make them:
///   POST /files/edit {"path", "old", "new", "expected_replacements"?}
///   POST /files/edit {"path", "edits": [{"old", "new", "expected_replacements"?}, ...]}
///     -> {"path", "replacements", "diff"}   (diff: unified, `diff -u` shape)
/// Edits apply in order, all or nothing; a count other than expected (default 1) is 409
/// naming the count and lines. The write is charged to the service's disk quota.
void register_edit_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files);

}  // namespace execd::api
