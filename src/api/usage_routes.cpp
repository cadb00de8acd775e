#include "api/usage_routes.hpp"

#include "files/disk_quota.hpp"
#include "http/json_io.hpp"

namespace execd::api {

void register_usage_routes(http::HttpServer& server, std::shared_ptr<files::DiskQuota> quota) {
  server.route(http::HttpServer::Method::get, R"(/files/usage)", [quota](const httplib::Request&, httplib::Response& res) {
    if (!quota) {
      return http::write_error(res, core::make_error(core::Errc::not_supported, "no disk quota is set (--disk-quota)"));
    }
    http::write_json(res, {{"root", quota->root()}, {"used", quota->used()}, {"quota", quota->limit()}});
  });
}

}  // namespace execd::api
