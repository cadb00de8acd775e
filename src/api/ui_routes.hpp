#pragma once

#include <string>

#include "http/http_server.hpp"

namespace execd::api {

/// Whether `--ui` (on, off, auto) serves the console on a daemon listening on `host`:
/// auto is on only for a loopback address (127.0.0.0/8, ::1, localhost).
bool ui_enabled(const std::string& flag, const std::string& host);

/// GET /ui (a redirect to /ui/, so the page's relative URLs resolve under any prefix a
/// proxy puts in front), /ui/ (the page) and /ui/{asset} (its script, styles and the
/// vendored xterm.js), served from memory (ui_assets()) with their Content-Type, a strong
/// ETag (If-None-Match answers 304) and `Cache-Control: no-cache`. These routes need no
/// access token: they hold no secret, and every API call the page makes carries it.
/// An unknown asset is the usual JSON 404.
void register_ui_routes(http::HttpServer& server);

}  // namespace execd::api
