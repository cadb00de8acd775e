#include "api/ping_routes.hpp"

namespace execd::api {

void register_ping_routes(http::HttpServer& server) {
  server.route(http::HttpServer::Method::get, "/ping", [](const httplib::Request&, httplib::Response& res) {
    res.status = 200;
  });
}

}  // namespace execd::api
