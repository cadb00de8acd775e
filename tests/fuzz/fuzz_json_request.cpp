// Fuzzes a JSON request body on its way to a domain spec: core::parse_json (with the
// default and a small nesting limit), http::parse_json_body, then the field readers of
// api/request_fields.hpp in the shapes of POST /command, /session/{id}/run, /code and
// /code/context. Nothing may throw or crash; parse_json must refuse whatever
// json_depth_within refuses; what parses must serialise again.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "api/request_fields.hpp"
#include "core/json_parse.hpp"
#include "http/json_io.hpp"

using nlohmann::json;
namespace api = execd::api;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "json_request: %s\n", what);
  std::abort();
}

// The fields each route reads, as the routes read them (command_routes.cpp,
// session_routes.cpp, code_routes.cpp).
void read_spec_fields(const json& body) {
  if (!api::require_object(body)) return;
  (void)api::string_field(body, "command");
  (void)api::string_field(body, "cwd");
  (void)api::bool_field(body, "background");
  (void)api::int_field(body, "timeout", INT64_MIN, INT64_MAX);
  (void)api::int_field(body, "uid", 0, UINT32_MAX);
  (void)api::int_field(body, "gid", 0, UINT32_MAX);
  (void)api::string_map_field(body, "envs");
  (void)api::string_field(body, "stdin");
  (void)api::bool_field(body, "stdin_open");
  (void)api::string_field(body, "code");
  (void)api::string_field(body, "language");
  if (auto ctx = body.find("context"); ctx != body.end() && ctx->is_object()) {
    (void)api::string_field(*ctx, "id");
    (void)api::string_field(*ctx, "language");
  }
  // Error messages and echoed values go back to the client as JSON.
  for (const auto& [k, v] : body.items()) {
    auto s = api::string_field(body, k);
    if (!s) (void)json({{"code", "x"}, {"message", s.error().message}}).dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto parsed = execd::core::parse_json(text);
    const bool shallow = execd::core::json_depth_within(text, execd::core::kMaxJsonDepth);
    if (parsed && !shallow) fail("parse_json accepted JSON deeper than kMaxJsonDepth");
    if (parsed) {
      read_spec_fields(*parsed);
      (void)parsed->dump(-1, ' ', false, json::error_handler_t::replace);
    }
    auto small = execd::core::parse_json(text, 4);
    if (small && !execd::core::json_depth_within(text, 4)) fail("parse_json accepted JSON deeper than its max_depth");
    if (small && !parsed) fail("parse_json accepted with depth 4 what it refused with depth 256");

    httplib::Request req;
    req.body.assign(text);
    req.set_header("Content-Type", "application/json");
    auto body = execd::http::parse_json_body(req, size % 2 == 0);
    if (body) read_spec_fields(*body);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "json_request: exception escaped: %s\n", e.what());
    std::abort();
  }
  return 0;
}
