#pragma once

namespace execd::http {

/// Marks the response the calling thread's handler is writing as relayed from an upstream
/// (the reverse proxy): HttpServer's error handler then leaves its status and body as they
/// are (an upstream's own 404 is not "no route"; a 4xx to HEAD has no body). Cleared when
/// the next request on the thread is routed.
void mark_relayed_response();

}  // namespace execd::http
