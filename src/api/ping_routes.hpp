#pragma once

#include "http/http_server.hpp"

namespace execd::api {

/// GET /ping: 200 with an empty body (auth applies, as on every route).
void register_ping_routes(http::HttpServer& server);

}  // namespace execd::api
