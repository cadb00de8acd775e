#pragma once

#include <memory>

#include "api/watch_hub.hpp"
#include "http/http_server.hpp"

namespace execd::api {

/// File events as SSE:
///   GET /files/watch?path=DIR[&recursive=true]   (Last-Event-ID resumes)
/// Events: `watch` {path, recursive, watched_dirs} first; then created, modified,
/// deleted, moved_from, moved_to ({path, kind?, size?, from?}) and overflow; the stream
/// ends with `watch_end` {reason} when the directory is deleted or moved away.
void register_watch_routes(http::HttpServer& server, std::shared_ptr<WatchHub> hub);

}  // namespace execd::api
