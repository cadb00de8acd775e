#include "api/ui_routes.hpp"

#include "api/ui_assets.hpp"
#include "core/result.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

const UiAsset* find_asset(std::string_view path) {
  for (const auto& a : ui_assets()) {
    if (a.path == path) return &a;
  }
  return nullptr;
}

// If-None-Match may list several tags, or be "*".
bool matches_etag(const std::string& header, std::string_view etag) {
  if (header == "*") return true;
  return header.find(etag) != std::string::npos;
}

}  // namespace

bool ui_enabled(const std::string& flag, const std::string& host) {
  if (flag == "on") return true;
  if (flag == "off") return false;
  return host.rfind("127.", 0) == 0 || host == "::1" || host == "localhost";
}

void register_ui_routes(http::HttpServer& server) {
  using M = http::HttpServer::Method;
  server.route(M::get, "/ui", [](const httplib::Request&, httplib::Response& res) {
    // Relative, so a proxy's prefix (/v1/sandboxes/{id}/proxy/44772/ui) is kept.
    res.status = 302;
    res.set_header("Location", "ui/");
  });
  server.route(M::get, R"(/ui/.*)", [](const httplib::Request& req, httplib::Response& res) {
    const UiAsset* asset = find_asset(req.path);
    if (asset == nullptr) {
      return http::write_error(res, core::make_error(core::Errc::not_found, "no console file " + req.path));
    }
    res.set_header("ETag", std::string(asset->etag));
    // Revalidated every time (a 304 costs one round trip), so a new build is seen at once.
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Content-Type-Options", "nosniff");
    if (matches_etag(req.get_header_value("If-None-Match"), asset->etag)) {
      res.status = 304;
      return;
    }
    res.set_content(asset->body.data(), asset->body.size(), std::string(asset->content_type));
  });
  server.allow_without_token(R"(/ui(/.*)?)");
}

}  // namespace execd::api
