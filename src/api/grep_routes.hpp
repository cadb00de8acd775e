#pragma once

#include <chrono>
#include <memory>

#include "files/file_service.hpp"
#include "http/http_server.hpp"

namespace execd::api {

/// Content search:
///   GET /files/grep?path=&pattern=[&glob=&ignore_case=&fixed=&gitignore=&context=
///                   &max_results=&max_bytes_per_file=&format=json]
/// SSE by default: one `match` event per matching line ({path, line, column, text,
/// before?, after?}) and a closing `summary` event ({matches, files_searched, files_binary,
/// bytes_searched, truncated, truncated_by?}). `format=json` answers
/// {"matches": [...], "summary": {...}} at once. Errors in the request (bad pattern,
/// missing path) are 4xx JSON before any stream starts. `timeout`: --search-timeout.
void register_grep_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files,
                          std::chrono::milliseconds timeout);

}  // namespace execd::api
