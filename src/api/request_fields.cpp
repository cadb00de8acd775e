#include "api/request_fields.hpp"

namespace execd::api {
namespace {

core::Error bad(const std::string& key, const std::string& expected, const nlohmann::json& got) {
  return core::make_error(core::Errc::invalid_argument,
                          "field '" + key + "' must be " + expected + ", got " + std::string(got.type_name()));
}

}  // namespace

core::Result<nlohmann::json> require_object(const nlohmann::json& body) {
  if (!body.is_object()) {
    return core::make_error(core::Errc::invalid_argument,
                            std::string("request body must be a JSON object, got ") + body.type_name());
  }
  return body;
}

core::Result<std::optional<std::string>> string_field(const nlohmann::json& body, const std::string& key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<std::string>{};
  if (!it->is_string()) return bad(key, "a string", *it);
  return std::optional<std::string>(it->get<std::string>());
}

core::Result<std::optional<bool>> bool_field(const nlohmann::json& body, const std::string& key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<bool>{};
  if (!it->is_boolean()) return bad(key, "a boolean", *it);
  return std::optional<bool>(it->get<bool>());
}

core::Result<std::optional<int64_t>> int_field(const nlohmann::json& body, const std::string& key, int64_t min,
                                               int64_t max) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<int64_t>{};
  if (!it->is_number_integer()) return bad(key, "an integer", *it);
  // Unsigned values above INT64_MAX read as out of range rather than wrapping.
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    return core::make_error(core::Errc::invalid_argument, "field '" + key + "' is out of range");
  }
  const int64_t v = it->get<int64_t>();
  if (v < min || v > max) {
    return core::make_error(core::Errc::invalid_argument, "field '" + key + "' must be between " +
                                                              std::to_string(min) + " and " + std::to_string(max) +
                                                              ", got " + std::to_string(v));
  }
  return std::optional<int64_t>(v);
}

core::Result<std::map<std::string, std::string>> string_map_field(const nlohmann::json& body, const std::string& key) {
  std::map<std::string, std::string> out;
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return out;
  if (!it->is_object()) return bad(key, "an object of strings", *it);
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) return bad(key + "." + k, "a string", v);
    out[k] = v.get<std::string>();
  }
  return out;
}

core::Result<std::string> required_query(const httplib::Request& req, const std::string& name) {
  std::string value = req.get_param_value(name);
  if (value.empty()) return core::make_error(core::Errc::missing_parameter, "query parameter '" + name + "' is required");
  return value;
}

}  // namespace execd::api
