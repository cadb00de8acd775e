#include "gateway/api/sandbox_json.hpp"

#include <ctime>

#include "gateway/resource_quantity.hpp"

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

bool digits(std::string_view t, size_t pos, size_t n, int& out) {
  if (pos + n > t.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (t[i] < '0' || t[i] > '9') return false;
    out = out * 10 + (t[i] - '0');
  }
  return true;
}

}  // namespace

std::string iso8601(TimePoint t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const int frac = static_cast<int>(ms - static_cast<int64_t>(secs) * 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // GCC sizes the fields as any int could be
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

core::Result<TimePoint> parse_iso8601(std::string_view field, std::string_view text) {
  auto fail = [&] {
    return bad(std::string(field) + ": '" + std::string(text) +
               "' is not an RFC 3339 time (e.g. 2026-11-16T14:30:45Z)");
  };
  int year = 0, mon = 0, day = 0, hour = 0, min = 0, sec = 0;
  if (!digits(text, 0, 4, year) || text.size() < 19 || text[4] != '-' || !digits(text, 5, 2, mon) || text[7] != '-' ||
      !digits(text, 8, 2, day) || (text[10] != 'T' && text[10] != 't') || !digits(text, 11, 2, hour) ||
      text[13] != ':' || !digits(text, 14, 2, min) || text[16] != ':' || !digits(text, 17, 2, sec)) {
    return fail();
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60) return fail();
  size_t i = 19;
  int64_t nanos = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    int64_t scale = 100'000'000;
    const size_t start = i;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
      nanos += (text[i] - '0') * scale;
      scale /= 10;
    }
    if (i == start) return fail();
  }
  int offset_minutes = 0;
  if (i < text.size() && (text[i] == 'Z' || text[i] == 'z')) {
    ++i;
  } else if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    int oh = 0, om = 0;
    if (!digits(text, i + 1, 2, oh) || i + 3 >= text.size() || text[i + 3] != ':' || !digits(text, i + 4, 2, om) ||
        oh > 23 || om > 59) {
      return fail();
    }
    offset_minutes = (oh * 60 + om) * (text[i] == '-' ? -1 : 1);
    i += 6;
  } else {
    return fail();
  }
  if (i != text.size()) return fail();
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  const std::time_t secs = timegm(&tm);
  if (tm.tm_mday != day) return fail();  // 2026-02-31 normalised into March
  return TimePoint(std::chrono::seconds(secs - offset_minutes * 60)) +
         std::chrono::duration_cast<TimePoint::duration>(std::chrono::nanoseconds(nanos));
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
