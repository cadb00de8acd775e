#include "api/file_routes.hpp"

#include <chrono>
#include <functional>
#include <limits>

#include "api/query_params.hpp"
#include "core/clock.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

using Method = http::HttpServer::Method;

std::string rfc3339(int64_t ns) {
  return core::rfc3339_nano(std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(ns))));
}

core::Result<std::vector<std::string>> paths_param(const httplib::Request& req) {
  const size_t n = req.get_param_value_count("path");
  if (n == 0) return core::make_error(core::Errc::missing_parameter, "query parameter 'path' is required");
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back(req.get_param_value("path", i));
  return out;
}

core::Result<nlohmann::json> object_body(const httplib::Request& req) {
  auto body = http::parse_json_body(req);
  if (!body) return body.error();
  if (!body->is_object()) return core::make_error(core::Errc::invalid_argument, "request body must be a JSON object keyed by path");
  return body;
}

/// For a body `{ "<path>": {"mode", "owner", "group"} }`: `apply(path, attributes)` per
/// entry in order, stopping at the first error; an empty JSON object when all succeed.
void apply_attribute_entries(const httplib::Request& req, httplib::Response& res,
                             const std::function<core::Result<void>(const std::string&, const files::AttributeRequest&)>& apply) {
  auto body = object_body(req);
  if (!body) return http::write_error(res, body.error());
  for (const auto& [path, v] : body->items()) {
    auto a = files::FileService::attribute_request(v, "the entry for " + path);
    if (!a) return http::write_error(res, a.error());
    if (auto r = apply(path, *a); !r) return http::write_error(res, r.error());
  }
  http::write_json(res, nlohmann::json::object());
}

}  // namespace

nlohmann::json file_info_json(const files::FileInfo& f) {
  return {{"path", f.path},
          {"type", f.type},
          {"size", f.size},
          {"modified_at", rfc3339(f.modified_ns)},
          {"created_at", rfc3339(f.changed_ns)},
          {"owner", f.owner},
          {"group", f.group},
          {"mode", f.mode}};
}

void register_file_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files) {
  server.route(Method::get, R"(/files/info)", [files](const httplib::Request& req, httplib::Response& res) {
    nlohmann::json out = nlohmann::json::object();
    for (size_t i = 0; i < req.get_param_value_count("path"); ++i) {
      const std::string path = req.get_param_value("path", i);
      auto info = files->info(path);
      if (!info) return http::write_error(res, info.error());
      out[path] = file_info_json(*info);
    }
    http::write_json(res, out);
  });

  server.route(Method::del, R"(/files)", [files](const httplib::Request& req, httplib::Response& res) {
    auto paths = paths_param(req);
    if (!paths) return http::write_error(res, paths.error());
    for (const auto& p : *paths) {
      if (auto r = files->remove_file(p); !r) return http::write_error(res, r.error());
    }
    http::write_json(res, nlohmann::json::object());
  });

  server.route(Method::post, R"(/files/mv)", [files](const httplib::Request& req, httplib::Response& res) {
    auto body = http::parse_json_body(req);
    if (!body) return http::write_error(res, body.error());
    if (!body->is_array()) {
      return http::write_error(res, core::make_error(core::Errc::invalid_argument, "request body must be an array of {\"src\",\"dest\"}"));
    }
    for (const auto& item : *body) {
      if (!item.is_object() || !item.value("src", nlohmann::json()).is_string() || !item.value("dest", nlohmann::json()).is_string()) {
        return http::write_error(res, core::make_error(core::Errc::invalid_argument, "each move needs string fields 'src' and 'dest'"));
      }
      if (auto r = files->move(item["src"], item["dest"]); !r) return http::write_error(res, r.error());
    }
    http::write_json(res, nlohmann::json::object());
  });

  server.route(Method::post, R"(/files/permissions)", [files](const httplib::Request& req, httplib::Response& res) {
    apply_attribute_entries(req, res, [&](const std::string& path, const files::AttributeRequest& a) {
      return files->set_attributes(path, a);
    });
  });

  server.route(Method::get, R"(/files/search)", [files](const httplib::Request& req, httplib::Response& res) {
    if (!req.has_param("path")) {
      return http::write_error(res, core::make_error(core::Errc::missing_parameter, "query parameter 'path' is required"));
    }
    auto found = files->search(req.get_param_value("path"), req.get_param_value("pattern"));
    if (!found) return http::write_error(res, found.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : found->entries) out.push_back(file_info_json(f));
    // The contract's body is the bare array; a cut-off result says so in headers: how
    // many entries it holds, and what cut it (the result bound or the time bound).
    using Cut = files::FileService::SearchResult::Cut;
    if (found->cut != Cut::none) {
      res.set_header("EXECD-RESULTS-TRUNCATED", std::to_string(found->entries.size()));
      res.set_header("EXECD-RESULTS-TRUNCATED-BY", found->cut == Cut::time ? "time" : "results");
    }
    http::write_json(res, out);
  });

  server.route(Method::post, R"(/files/replace)", [files](const httplib::Request& req, httplib::Response& res) {
    auto body = object_body(req);
    if (!body) return http::write_error(res, body.error());
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& [path, v] : body->items()) {
      if (!v.is_object() || !v.value("old", nlohmann::json()).is_string() || !v.value("new", nlohmann::json()).is_string()) {
        return http::write_error(res, core::make_error(core::Errc::invalid_argument, "entry for " + path + " needs string fields 'old' and 'new'"));
      }
      auto n = files->replace(path, v["old"], v["new"]);
      if (!n) return http::write_error(res, n.error());
      counts[path] = {{"replacedCount", *n}};
    }
    http::write_json(res, req.get_param_value("verbose") == "true" ? counts : nlohmann::json::object());
  });

  server.route(Method::get, R"(/directories/list)", [files](const httplib::Request& req, httplib::Response& res) {
    if (!req.has_param("path")) {
      return http::write_error(res, core::make_error(core::Errc::missing_parameter, "query parameter 'path' is required"));
    }
    auto depth = uint_query(req, "depth", 0, std::numeric_limits<int>::max());
    if (!depth) return http::write_error(res, depth.error());
    auto entries = files->list(req.get_param_value("path"), static_cast<int>(depth->value_or(1)));
    if (!entries) return http::write_error(res, entries.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : *entries) out.push_back(file_info_json(f));
    http::write_json(res, out);
  });

  server.route(Method::post, R"(/directories)", [files](const httplib::Request& req, httplib::Response& res) {
    apply_attribute_entries(req, res, [&](const std::string& path, const files::AttributeRequest& a) {
      return files->make_directories(path, a);
    });
  });

  server.route(Method::del, R"(/directories)", [files](const httplib::Request& req, httplib::Response& res) {
    auto paths = paths_param(req);
    if (!paths) return http::write_error(res, paths.error());
    for (const auto& p : *paths) {
      if (auto r = files->remove_tree(p); !r) return http::write_error(res, r.error());
    }
    http::write_json(res, nlohmann::json::object());
  });
}

}  // namespace execd::api
