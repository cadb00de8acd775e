#include "api/edit_routes.hpp"

#include "api/request_fields.hpp"
#include "files/text_edit.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

core::Result<files::TextEdit> edit_of(const nlohmann::json& v, const std::string& subject) {
  if (!v.is_object()) return core::make_error(core::Errc::invalid_argument, subject + " must be an object with 'old' and 'new'");
  files::TextEdit e;
  auto old_text = string_field(v, "old");
  if (!old_text) return old_text.error();
  auto new_text = string_field(v, "new");
  if (!new_text) return new_text.error();
  auto expected = int_field(v, "expected_replacements", 1, INT64_MAX);
  if (!expected) return expected.error();
  if (!*old_text) return core::make_error(core::Errc::invalid_argument, subject + ": field 'old' is required");
  if (!*new_text) return core::make_error(core::Errc::invalid_argument, subject + ": field 'new' is required");
  e.old_text = std::move(**old_text);
  e.new_text = std::move(**new_text);
  if (*expected) e.expected_replacements = static_cast<uint64_t>(**expected);
  return e;
}

}  // namespace

void register_edit_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files) {
  server.route(http::HttpServer::Method::post, R"(/files/edit)",
               [files](const httplib::Request& req, httplib::Response& res) {
    auto body = http::parse_json_body(req);
    if (!body) return http::write_error(res, body.error());
    if (auto o = require_object(*body); !o) return http::write_error(res, o.error());
    auto path = string_field(*body, "path");
    if (!path) return http::write_error(res, path.error());
    if (!*path || (*path)->empty()) {
      return http::write_error(res, core::make_error(core::Errc::invalid_argument, "field 'path' is required"));
    }
    std::vector<files::TextEdit> edits;
    if (auto it = body->find("edits"); it != body->end() && !it->is_null()) {
      if (body->contains("old") || body->contains("new")) {
        return http::write_error(res, core::make_error(core::Errc::invalid_argument, "give either 'edits' or 'old'/'new', not both"));
      }
      if (!it->is_array() || it->empty()) {
        return http::write_error(res, core::make_error(core::Errc::invalid_argument, "field 'edits' must be a non-empty array"));
      }
      for (size_t i = 0; i < it->size(); ++i) {
        auto e = edit_of((*it)[i], "edits[" + std::to_string(i) + "]");
        if (!e) return http::write_error(res, e.error());
        edits.push_back(std::move(e).value());
      }
    } else {
      auto e = edit_of(*body, "the request");
      if (!e) return http::write_error(res, e.error());
      edits.push_back(std::move(e).value());
    }
    auto outcome = files::TextEditor(*files).edit(**path, edits);
    if (!outcome) return http::write_error(res, outcome.error());
    http::write_json(res, {{"path", outcome->path}, {"replacements", outcome->replacements}, {"diff", outcome->diff}});
  });
}

}  // namespace execd::api
