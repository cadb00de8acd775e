#include "gateway/backends/remote_backend.hpp"

#include <nlohmann/json.hpp>

#include "core/json_parse.hpp"
#include "gateway/resource_quantity.hpp"
#include "gateway/rfc3339.hpp"

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;
using nlohmann::json;

// The peer's {"code","message"} error as the same kind here, its message kept.
core::Error peer_error(const std::string& url, const http::ClientResponse& r, const std::string& what) {
  const json body = json::parse(r.body, nullptr, false);
  std::string message = body.is_object() && body.contains("message") && body["message"].is_string()
                            ? body["message"].get<std::string>()
                            : r.body.substr(0, 200);
  const std::string code = body.is_object() && body.contains("code") && body["code"].is_string()
                               ? body["code"].get<std::string>()
                               : std::string();
  message = "peer gateway " + url + " (" + what + "): " + message;
  switch (r.status) {
    case 400:
      return {Errc::invalid_argument, message};
    case 404:
      return {Errc::not_found, message};
    case 409:
      return {Errc::conflict, message};
    case 501:
      return {Errc::not_supported, message};
    case 503:
      return {code == "CAPACITY" ? Errc::capacity : Errc::unavailable, message};
    case 401:
      return {Errc::bad_gateway, "peer gateway " + url + " refused this gateway's --remote-api-key (" + what + ")"};
    default:
      return {Errc::bad_gateway, message + " (status " + std::to_string(r.status) + ")"};
  }
}

std::string text_of(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

core::Result<Sandbox> parse_peer_sandbox(const std::string& url, const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  auto garbled = [&](const std::string& why) {
    return make_error(Errc::bad_gateway,
                      "peer gateway " + url + " answered a sandbox this gateway cannot read: " + why);
  };
  if (!j.is_object() || !j.contains("status") || !j["status"].is_object()) return garbled("no status object");
  Sandbox s;
  s.id = text_of(j, "id");
  const json& st = j["status"];
  auto state = parse_state(text_of(st, "state"));
  if (!state) return garbled("state '" + text_of(st, "state") + "'");
  s.state = *state;
  s.reason = text_of(st, "reason");
  s.message = text_of(st, "message");
  if (j.contains("image") && j["image"].is_object()) s.spec.image = text_of(j["image"], "uri");
  try {
    if (j.contains("metadata") && j["metadata"].is_object()) {
      s.spec.metadata = j["metadata"].get<std::map<std::string, std::string>>();
    }
    if (j.contains("entrypoint") && j["entrypoint"].is_array()) {
      s.spec.entrypoint = j["entrypoint"].get<std::vector<std::string>>();
    }
  } catch (const json::exception& e) {
    return garbled(e.what());
  }
  auto time_of = [&](const json& obj, const char* key) -> core::Result<std::optional<TimePoint>> {
    const std::string t = text_of(obj, key);
    if (t.empty()) return std::optional<TimePoint>();
    auto parsed = parse_rfc3339(key, t);
    if (!parsed) return garbled(parsed.error().message);
    return std::optional<TimePoint>(*parsed);
  };
  auto created = time_of(j, "createdAt");
  auto updated = time_of(j, "updatedAt");
  auto expires = time_of(j, "expiresAt");
  auto transition = time_of(st, "lastTransitionAt");
  for (const auto* r : {&created, &updated, &expires, &transition}) {
    if (!*r) return r->error();
  }
  s.created_at = created->value_or(TimePoint{});
  s.updated_at = updated->value_or(s.created_at);
  s.last_transition_at = transition->value_or(s.updated_at);
  s.expires_at = *expires;
  return s;
}

std::string encode_id(const std::string& id) {
  // Ids are [A-Za-z0-9._-] (checked where they are made or accepted); nothing to escape.
  return "/v1/sandboxes/" + id;
}

}  // namespace

core::Result<std::unique_ptr<RemoteBackend>> RemoteBackend::open(Options options) {
  while (!options.url.empty() && options.url.back() == '/') options.url.pop_back();
  if (options.url.rfind("http://", 0) != 0) {
    return make_error(Errc::invalid_argument, "--remote must be http://host:port, got '" + options.url + "'");
  }
  auto peer = http::ClientEndpoint::parse(options.url);
  if (!peer || !peer->unix_path.empty() || peer->host.empty() || peer->port <= 0 ||
      options.url.find('/', 7) != std::string::npos) {
    return make_error(Errc::invalid_argument, "--remote must be http://host:port (no path), got '" + options.url + "'");
  }
  return std::unique_ptr<RemoteBackend>(new RemoteBackend(std::move(options), std::move(*peer)));
}

core::Result<http::ClientResponse> RemoteBackend::call(const std::string& method, const std::string& target,
                                                       std::string body, const std::string& what) const {
  http::ClientRequest req;
  req.method = method;
  req.target = target;
  req.timeout = options_.timeout;
  if (!options_.api_key.empty()) req.headers.emplace_back("OPEN-SANDBOX-API-KEY", options_.api_key);
  if (!body.empty() || method == "POST" || method == "PATCH") {
    req.headers.emplace_back("Content-Type", "application/json");
    req.body = std::move(body);
  }
  auto r = http::send_request(peer_, req);
  if (!r) {
    return make_error(Errc::bad_gateway,
                      "peer gateway " + options_.url + " cannot be reached (" + what + "): " + r.error().message);
  }
  return r;
}

core::Result<void> RemoteBackend::validate(const SandboxSpec&) const {
  return {};
}

core::Result<void> RemoteBackend::has_room(const SandboxSpec&) const {
  return {};
}

core::Result<Placement> RemoteBackend::create(const std::string& sandbox_id, const SandboxSpec& spec,
                                              const std::string&) {
  json body = {{"image", {{"uri", spec.image}}}, {"env", spec.env}, {"metadata", spec.metadata}};
  if (!spec.entrypoint.empty()) body["entrypoint"] = spec.entrypoint;
  if (spec.timeout) body["timeout"] = spec.timeout->count();
  const auto limits = format_resource_limits(spec.limits);
  if (!limits.empty()) body["resourceLimits"] = limits;
  http::ClientRequest req;
  req.method = "POST";
  req.target = "/v1/sandboxes";
  req.timeout = options_.timeout;
  req.headers = {{"Content-Type", "application/json"}, {"X-Execd-Sandbox-Id", sandbox_id}};
  if (!options_.api_key.empty()) req.headers.emplace_back("OPEN-SANDBOX-API-KEY", options_.api_key);
  req.body = body.dump();
  auto r = http::send_request(peer_, req);
  if (!r) {
    // Nothing was placed: the caller's create fails as a whole (503, not 502).
    return make_error(Errc::unavailable,
                      "overflow peer gateway " + options_.url + " cannot be reached: " + r.error().message);
  }
  if (r->status != 202) {
    auto e = peer_error(options_.url, *r, "create");
    if (e.code == Errc::bad_gateway) e.code = Errc::unavailable;
    return e;
  }
  auto placed = parse_peer_sandbox(options_.url, r->body);
  if (!placed) return make_error(Errc::unavailable, placed.error().message);
  if (placed->id != sandbox_id) {
    // A peer that ignores the id header (an older gateway) still works: keep its id.
    return Placement{placed->id, peer_.host, peer_.port};
  }
  return Placement{sandbox_id, peer_.host, peer_.port};
}

core::Result<Sandbox> RemoteBackend::describe(const std::string& peer_id) const {
  auto r = call("GET", encode_id(peer_id), "", "get " + peer_id);
  if (!r) return r.error();
  if (r->status != 200) return peer_error(options_.url, *r, "get " + peer_id);
  return parse_peer_sandbox(options_.url, r->body);
}

core::Result<InstanceStatus> RemoteBackend::inspect(const Placement& placement) {
  InstanceStatus status;
  auto s = describe(placement.handle);
  if (!s) {
    if (s.error().code == Errc::not_found) return status;  // gone
    return s.error();
  }
  switch (s->state) {
    case SandboxState::pending:
      status.phase = InstanceStatus::Phase::starting;
      break;
    case SandboxState::paused:
      status.phase = InstanceStatus::Phase::paused;
      break;
    case SandboxState::terminated:
    case SandboxState::failed:
      status.phase = InstanceStatus::Phase::exited;
      status.message = s->reason + (s->message.empty() ? "" : ": " + s->message);
      break;
    default:
      status.phase = InstanceStatus::Phase::running;
      break;
  }
  return status;
}

core::Result<void> RemoteBackend::pause(const Placement& placement) {
  auto r = call("POST", encode_id(placement.handle) + "/pause", "", "pause " + placement.handle);
  if (!r) return r.error();
  if (r->status != 202 && r->status != 200) return peer_error(options_.url, *r, "pause " + placement.handle);
  return {};
}

core::Result<void> RemoteBackend::resume(const Placement& placement) {
  auto r = call("POST", encode_id(placement.handle) + "/resume", "", "resume " + placement.handle);
  if (!r) return r.error();
  if (r->status != 202 && r->status != 200) return peer_error(options_.url, *r, "resume " + placement.handle);
  return {};
}

core::Result<void> RemoteBackend::remove(const Placement& placement) {
  auto r = call("DELETE", encode_id(placement.handle), "", "delete " + placement.handle);
  if (!r) return r.error();
  if (r->status == 204 || r->status == 200 || r->status == 404) return {};
  if (r->status == 409) {
    // Already ended there (expired, failed, deleted) is what a remove wants.
    auto s = describe(placement.handle);
    if (s && is_final(s->state)) return {};
  }
  return peer_error(options_.url, *r, "delete " + placement.handle);
}

core::Result<std::vector<Instance>> RemoteBackend::list() {
  std::vector<Instance> out;
  for (int page = 1; page <= 1000; ++page) {
    auto r = call("GET", "/v1/sandboxes?pageSize=1000&page=" + std::to_string(page), "", "list");
    if (!r) return r.error();
    if (r->status != 200) return peer_error(options_.url, *r, "list");
    const json j = json::parse(r->body, nullptr, false);
    if (!j.is_object() || !j.contains("items") || !j["items"].is_array()) {
      return make_error(Errc::bad_gateway, "peer gateway " + options_.url + " answered a list without items");
    }
    const json& items = j["items"];
    for (const auto& item : items) {
      auto s = parse_peer_sandbox(options_.url, item.dump());
      if (!s) return s.error();
      if (is_final(s->state)) continue;
      Instance i;
      i.sandbox_id = s->id;
      i.placement = Placement{s->id, peer_.host, peer_.port};
      i.status.phase = s->state == SandboxState::paused    ? InstanceStatus::Phase::paused
                       : s->state == SandboxState::pending ? InstanceStatus::Phase::starting
                                                           : InstanceStatus::Phase::running;
      out.push_back(std::move(i));
    }
    const bool more =
        j.contains("pagination") && j["pagination"].is_object() && j["pagination"].value("hasNextPage", false);
    if (!more) break;
  }
  return out;
}

core::Result<TimePoint> RemoteBackend::renew(const std::string& peer_id, TimePoint expires_at) const {
  const std::string what = "renew " + peer_id;
  auto r = call("POST", encode_id(peer_id) + "/renew-expiration",
                json{{"expiresAt", format_rfc3339_ms(expires_at)}}.dump(), what);
  if (!r) return r.error();
  if (r->status != 200) return peer_error(options_.url, *r, what);
  const json j = json::parse(r->body, nullptr, false);
  if (!j.is_object())
    return make_error(Errc::bad_gateway, "peer gateway " + options_.url + " answered a renew without JSON");
  auto when = parse_rfc3339("expiresAt", text_of(j, "expiresAt"));
  if (!when) return make_error(Errc::bad_gateway, "peer gateway " + options_.url + ": " + when.error().message);
  return *when;
}

core::Result<Sandbox> RemoteBackend::patch_metadata(
    const std::string& peer_id, const std::map<std::string, std::optional<std::string>>& patch) const {
  json body = json::object();
  for (const auto& [k, v] : patch) body[k] = v ? json(*v) : json(nullptr);
  const std::string what = "patch metadata of " + peer_id;
  auto r = call("PATCH", encode_id(peer_id) + "/metadata", body.dump(), what);
  if (!r) return r.error();
  if (r->status != 200) return peer_error(options_.url, *r, what);
  return parse_peer_sandbox(options_.url, r->body);
}

core::Result<PeerEndpoint> RemoteBackend::endpoint(const std::string& peer_id, int port, bool use_proxy) const {
  const std::string what = "endpoint " + std::to_string(port) + " of " + peer_id;
  auto r = call("GET",
                encode_id(peer_id) + "/endpoints/" + std::to_string(port) + (use_proxy ? "?use_server_proxy=true" : ""),
                "", what);
  if (!r) return r.error();
  if (r->status != 200) return peer_error(options_.url, *r, what);
  const json j = json::parse(r->body, nullptr, false);
  if (!j.is_object() || !j.contains("endpoint") || !j["endpoint"].is_string()) {
    return make_error(Errc::bad_gateway, "peer gateway " + options_.url + " answered an endpoint without 'endpoint'");
  }
  PeerEndpoint e;
  e.endpoint = j["endpoint"].get<std::string>();
  if (j.contains("headers") && j["headers"].is_object()) {
    for (const auto& [k, v] : j["headers"].items()) {
      if (v.is_string()) e.headers[k] = v.get<std::string>();
    }
  }
  return e;
}

}  // namespace execd::gateway
