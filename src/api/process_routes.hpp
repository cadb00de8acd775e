#pragma once

#include "http/http_server.hpp"

namespace execd::api {

/// Processes visible to the daemon (from /proc):
///   GET    /processes                   -> [{"pid","ppid","pgid","user","uid","state",
///                                            "command","cpu_percent","rss_bytes","started_at"}]
///   DELETE /processes/{pid}?signal=TERM -> signals one process; 403 for the daemon itself
///                                          and pid 1
void register_process_routes(http::HttpServer& server);

}  // namespace execd::api
