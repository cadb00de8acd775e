#include "http/json_io.hpp"

#include "core/json_parse.hpp"
#include "exec/event.hpp"
#include "http/error_mapping.hpp"

namespace execd::http {

void write_error(httplib::Response& res, const core::Error& error) {
  const HttpError mapped = map_error(error.code);
  res.status = mapped.status;
  res.set_content(exec::dump_json({{"code", mapped.code}, {"message", error.message}}), "application/json");
}

void write_json(httplib::Response& res, const nlohmann::json& body, int status) {
  res.status = status;
  res.set_content(exec::dump_json(body), "application/json");
}

core::Result<nlohmann::json> parse_json_body(const httplib::Request& req, bool allow_empty) {
  if (req.body.empty()) {
    if (allow_empty) return nlohmann::json::object();
    return core::make_error(core::Errc::invalid_argument, "request body is empty; expected a JSON object");
  }
  auto parsed = core::parse_json(req.body);
  if (!parsed) return core::make_error(core::Errc::invalid_argument, "request body: " + parsed.error().message);
  return parsed;
}

}  // namespace execd::http
