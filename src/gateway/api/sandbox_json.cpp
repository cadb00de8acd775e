#include "gateway/api/sandbox_json.hpp"

#include "gateway/resource_quantity.hpp"
#include "gateway/rfc3339.hpp"

namespace execd::gateway::api {
namespace {

using core::Errc;
using core::make_error;
using nlohmann::json;

constexpr int64_t kMaxTimeoutSeconds = 366LL * 24 * 3600;

core::Error bad(const std::string& message) { return make_error(Errc::invalid_argument, message); }

core::Result<std::map<std::string, std::string>> string_map(const json& body, const char* key) {
  std::map<std::string, std::string> out;
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return out;
  if (!it->is_object()) return bad(std::string(key) + " must be an object of strings");
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) return bad(std::string(key) + "." + k + " must be a string");
    out[k] = v.get<std::string>();
  }
  return out;
}

json status_json(const Sandbox& s) {
  json status = {{"state", to_string(s.state)}, {"lastTransitionAt", iso8601(s.last_transition_at)}};
  if (!s.reason.empty()) status["reason"] = s.reason;
  if (!s.message.empty()) status["message"] = s.message;
  return status;
}

}  // namespace

std::string iso8601(TimePoint t) { return format_rfc3339_ms(t); }

core::Result<TimePoint> parse_iso8601(std::string_view field, std::string_view text) {
  return parse_rfc3339(field, text);
}

core::Result<SandboxSpec> parse_create_request(const json& body) {
  if (!body.is_object()) return bad("request body must be a JSON object");
  SandboxSpec spec;
  if (body.contains("snapshotId") && !body["snapshotId"].is_null()) {
    return make_error(Errc::not_supported, "snapshotId: snapshots are not supported by this gateway; give image.uri");
  }
  auto image = body.find("image");
  if (image == body.end() || image->is_null()) return bad("image is required: {\"image\": {\"uri\": \"host\"}}");
  if (!image->is_object()) return bad("image must be an object with a uri");
  auto uri = image->find("uri");
  if (uri == image->end() || !uri->is_string() || uri->get<std::string>().empty()) {
    return bad("image.uri is required and must be a non-empty string");
  }
  spec.image = uri->get<std::string>();

  if (auto ep = body.find("entrypoint"); ep != body.end() && !ep->is_null()) {
    if (!ep->is_array()) return bad("entrypoint must be an array of strings");
    for (const auto& part : *ep) {
      if (!part.is_string()) return bad("entrypoint must be an array of strings; found " + std::string(part.type_name()));
      spec.entrypoint.push_back(part.get<std::string>());
    }
    if (spec.entrypoint.empty()) return bad("entrypoint must not be empty when given (omit it to run execd alone)");
  }

  if (auto t = body.find("timeout"); t != body.end() && !t->is_null()) {
    if (!t->is_number_integer()) return bad("timeout must be a whole number of seconds, got " + t->dump());
    const int64_t seconds = t->get<int64_t>();
    if (seconds <= 0 || seconds > kMaxTimeoutSeconds) {
      return bad("timeout must be from 1 to " + std::to_string(kMaxTimeoutSeconds) + " seconds, got " +
                 std::to_string(seconds));
    }
    spec.timeout = std::chrono::seconds(seconds);
  }

  auto limits_text = string_map(body, "resourceLimits");
  if (!limits_text) return limits_text.error();
  auto limits = parse_resource_limits(*limits_text);
  if (!limits) return limits.error();
  spec.limits = *limits;

  auto env = string_map(body, "env");
  if (!env) return env.error();
  for (const auto& [k, v] : *env) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos) {
      return bad("env: '" + k + "' is not a valid variable name");
    }
  }
  spec.env = std::move(*env);

  auto metadata = string_map(body, "metadata");
  if (!metadata) return metadata.error();
  spec.metadata = std::move(*metadata);
  return spec;
}

core::Result<std::map<std::string, std::optional<std::string>>> parse_metadata_patch(const json& body) {
  if (!body.is_object()) return bad("the metadata patch must be a JSON object of strings or nulls");
  std::map<std::string, std::optional<std::string>> patch;
  for (const auto& [k, v] : body.items()) {
    if (v.is_null()) {
      patch[k] = std::nullopt;
    } else if (v.is_string()) {
      patch[k] = v.get<std::string>();
    } else {
      return bad("metadata." + k + " must be a string or null, got " + std::string(v.type_name()));
    }
  }
  return patch;
}

json create_response_json(const Sandbox& s) {
  json j = {{"id", s.id},
            {"status", status_json(s)},
            {"metadata", s.spec.metadata},
            {"createdAt", iso8601(s.created_at)},
            {"entrypoint", s.spec.entrypoint}};
  if (s.expires_at) j["expiresAt"] = iso8601(*s.expires_at);
  return j;
}

json sandbox_json(const Sandbox& s) {
  json j = create_response_json(s);
  j["image"] = {{"uri", s.spec.image}};
  j["updatedAt"] = iso8601(s.updated_at);
  return j;
}

}  // namespace execd::gateway::api
