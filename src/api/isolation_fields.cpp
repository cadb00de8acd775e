#include "api/isolation_fields.hpp"

#include "api/request_fields.hpp"

namespace execd::api {

core::Result<isolation::Limits> parse_isolation_fields(const nlohmann::json& body, const isolation::Limits& defaults,
                                                       const isolation::Capabilities& caps) {
  if (!body.is_object()) return require_object(body).error();
  isolation::Limits limits = defaults;
  auto level = string_field(body, "isolation");
  if (!level) return level.error();
  if (*level) {
    auto parsed = isolation::parse_level(**level);
    if (!parsed) return core::make_error(core::Errc::invalid_argument, "field 'isolation': " + parsed.error().message);
    limits.level = *parsed;
  }
  auto network = bool_field(body, "network");
  if (!network) return network.error();
  if (*network) limits.network = **network;
  for (const isolation::Limit l : isolation::kAllLimits) {
    const std::string key(isolation::field_name(l));
    auto v = int_field(body, key, 1, static_cast<int64_t>(isolation::max_value(l)));
    if (!v) return v.error();
    if (*v) limits.set(l, static_cast<uint64_t>(**v));
  }
  if (auto r = isolation::check(limits, caps); !r) return r.error();
  return limits;
}

core::Result<isolation::Limits> parse_isolation_fields(const nlohmann::json& body, isolation::Isolator& isolator) {
  return parse_isolation_fields(body, isolator.defaults(), isolator.capabilities());
}

core::Result<isolation::Limits> request_limits(const nlohmann::json& body, isolation::Isolator* isolator) {
  if (isolator != nullptr) return parse_isolation_fields(body, *isolator);
  if (body.is_object()) {
    for (const char* key : {"isolation", "network"}) {
      if (body.contains(key)) {
        return core::make_error(core::Errc::invalid_argument,
                                std::string("field '") + key + "': isolation is not available in this daemon");
      }
    }
    for (const isolation::Limit l : isolation::kAllLimits) {
      const std::string key(isolation::field_name(l));
      if (body.contains(key)) {
        return core::make_error(core::Errc::invalid_argument,
                                "field '" + key + "': limits are not available in this daemon");
      }
    }
  }
  return isolation::Limits{};
}

}  // namespace execd::api
