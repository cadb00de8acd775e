#include "gateway/backends/docker_engine.hpp"

#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "core/bytes.hpp"

namespace execd::gateway {

namespace {

using json = nlohmann::json;

using core::percent_encode;

/// Ids and names go into URL paths: only what Docker's names and references can hold,
/// so nothing can step to another route ("..", "?", "#").
core::Result<std::string> path_name(const std::string& name, const std::string& what) {
  if (name.empty()) return core::make_error(core::Errc::invalid_argument, what + " is empty");
  for (const unsigned char c : name) {
    if (std::isalnum(c) == 0 && c != '-' && c != '_' && c != '.' && c != ':' && c != '/' && c != '@') {
      return core::make_error(core::Errc::invalid_argument, what + " holds a character Docker names cannot: " + name);
    }
  }
  if (name.find("..") != std::string::npos) {
    return core::make_error(core::Errc::invalid_argument, what + " holds '..': " + name);
  }
  return name;
}

std::string label_filter(const std::vector<std::string>& labels) {
  return percent_encode(json{{"label", labels}}.dump());
}

std::pair<int, int> parse_version(const std::string& v) {
  int major = 0;
  int minor = 0;
  if (std::sscanf(v.c_str(), "%d.%d", &major, &minor) != 2) return {0, 0};
  return {major, minor};
}

std::vector<std::string> string_list(const json& j) {
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (e.is_string()) out.push_back(e.get<std::string>());
  }
  return out;
}

std::map<std::string, std::string> string_map(const json& j) {
  std::map<std::string, std::string> out;
  if (!j.is_object()) return out;
  for (const auto& [k, v] : j.items()) {
    if (v.is_string()) out.emplace(k, v.get<std::string>());
  }
  return out;
}

std::map<std::string, std::string> network_ips(const json& networks) {
  std::map<std::string, std::string> out;
  if (!networks.is_object()) return out;
  for (const auto& [name, net] : networks.items()) {
    if (net.is_object() && net.contains("IPAddress") && net["IPAddress"].is_string()) {
      out.emplace(name, net["IPAddress"].get<std::string>());
    }
  }
  return out;
}

/// j[key], or null when j is not an object or lacks it (the engine sends null for empty
/// lists and maps: json::value() would throw on those).
const json& field(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  const auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

template <typename T>
T value_or(const json& j, const char* key, T fallback) {
  if (!j.is_object() || !j.contains(key)) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

core::Result<json> parse_body(const http::ClientResponse& r, const std::string& what) {
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded()) {
    return core::make_error(core::Errc::unavailable, "docker engine: unreadable answer to " + what);
  }
  return j;
}

}  // namespace

core::Result<DockerEngine> DockerEngine::connect(const std::string& docker_host, std::chrono::milliseconds timeout) {
  auto endpoint = http::ClientEndpoint::parse(docker_host.rfind("tcp://", 0) == 0
                                                  ? "http://" + docker_host.substr(6)
                                                  : docker_host);
  if (!endpoint) {
    return core::make_error(core::Errc::invalid_argument, "docker host: " + endpoint.error().message);
  }
  DockerEngine engine(std::move(*endpoint), timeout);

  http::ClientRequest req;
  req.target = "/version";
  req.timeout = timeout;
  auto r = http::send_request(engine.endpoint_, req);
  if (!r) return core::make_error(core::Errc::unavailable, "docker engine at " + docker_host + ": " + r.error().message);
  if (r->status != 200) {
    return core::make_error(core::Errc::unavailable,
                            "docker engine at " + docker_host + ": /version answered " + std::to_string(r->status));
  }
  auto j = parse_body(*r, "/version");
  if (!j) return j.error();
  const auto version = value_or<std::string>(*j, "ApiVersion", "");
  if (version.empty() || parse_version(version) < parse_version(kMinApiVersion)) {
    return core::make_error(core::Errc::unavailable, "docker engine at " + docker_host + " speaks API " +
                                                         (version.empty() ? "?" : version) + ", " +
                                                         kMinApiVersion + " or later is needed");
  }
  engine.api_version_ = version;
  return engine;
}

core::Result<http::ClientResponse> DockerEngine::call(const std::string& method, const std::string& target,
                                                      std::string body, const std::string& what,
                                                      const std::string& content_type) const {
  http::ClientRequest req;
  req.method = method;
  req.target = "/v" + api_version_ + target;
  req.timeout = timeout_;
  if (!body.empty() || method == "POST") {
    req.headers.emplace_back("Content-Type", content_type);
    req.body = std::move(body);
  }
  auto r = http::send_request(endpoint_, req);
  if (!r) return core::make_error(core::Errc::unavailable, "docker engine, " + what + ": " + r.error().message);
  if (r->status >= 200 && r->status < 300) return r;

  // Errors come as {"message": "..."}; say what the engine said, not just the status.
  std::string message;
  json j = json::parse(r->body, nullptr, false);
  if (!j.is_discarded()) message = value_or<std::string>(j, "message", "");
  if (message.empty()) message = "HTTP " + std::to_string(r->status);
  message = "docker engine, " + what + ": " + message;
  switch (r->status) {
    case 400: return core::make_error(core::Errc::invalid_argument, message);
    case 404: return core::make_error(core::Errc::not_found, message);
    case 409: return core::make_error(core::Errc::conflict, message);
    default: return core::make_error(core::Errc::unavailable, message);
  }
}

core::Result<EngineInfo> DockerEngine::info() const {
  auto r = call("GET", "/info", "", "info");
  if (!r) return r.error();
  auto j = parse_body(*r, "info");
  if (!j) return j.error();
  EngineInfo info;
  info.mem_total = value_or<uint64_t>(*j, "MemTotal", 0);
  info.ncpu = value_or<int>(*j, "NCPU", 0);
  info.server_version = value_or<std::string>(*j, "ServerVersion", "");
  if (field(*j, "Runtimes").is_object()) {
    for (const auto& [name, _] : field(*j, "Runtimes").items()) info.runtimes.push_back(name);
  }
  return info;
}

core::Result<std::string> DockerEngine::create_container(const ContainerSpec& spec) const {
  json host{{"Init", spec.init}};
  if (!spec.binds.empty()) host["Binds"] = spec.binds;
  if (!spec.network.empty()) host["NetworkMode"] = spec.network;
  if (!spec.runtime.empty()) host["Runtime"] = spec.runtime;
  if (spec.memory_bytes > 0) {
    host["Memory"] = spec.memory_bytes;
    host["MemorySwap"] = spec.memory_bytes;  // no swap beyond the limit: a hog is killed, not slowed
  }
  if (spec.nano_cpus > 0) host["NanoCpus"] = spec.nano_cpus;
  if (spec.pids_limit > 0) host["PidsLimit"] = spec.pids_limit;

  json body{{"Image", spec.image}, {"Env", spec.env}, {"Labels", spec.labels}, {"HostConfig", host}};
  if (!spec.entrypoint.empty()) body["Entrypoint"] = spec.entrypoint;
  if (!spec.cmd.empty()) body["Cmd"] = spec.cmd;
  if (!spec.network.empty()) body["NetworkingConfig"] = {{"EndpointsConfig", {{spec.network, json::object()}}}};

  std::string target = "/containers/create";
  if (!spec.name.empty()) {
    auto name = path_name(spec.name, "container name");
    if (!name) return name.error();
    target += "?name=" + percent_encode(*name);
  }
  auto r = call("POST", target, body.dump(), "create container from " + spec.image);
  if (!r) return r.error();
  auto j = parse_body(*r, "create container");
  if (!j) return j.error();
  auto id = value_or<std::string>(*j, "Id", "");
  if (id.empty()) return core::make_error(core::Errc::unavailable, "docker engine: create container answered no Id");
  return id;
}

core::Result<void> DockerEngine::start_container(const std::string& id_or_name) const {
  auto id = path_name(id_or_name, "container");
  if (!id) return id.error();
  auto r = call("POST", "/containers/" + *id + "/start", "", "start container " + *id);
  if (!r) return r.error();
  return {};
}

core::Result<ContainerInfo> DockerEngine::inspect_container(const std::string& id_or_name) const {
  auto id = path_name(id_or_name, "container");
  if (!id) return id.error();
  auto r = call("GET", "/containers/" + *id + "/json", "", "inspect container " + *id);
  if (!r) return r.error();
  auto j = parse_body(*r, "inspect container");
  if (!j) return j.error();
  ContainerInfo info;
  info.id = value_or<std::string>(*j, "Id", "");
  info.name = value_or<std::string>(*j, "Name", "");
  if (!info.name.empty() && info.name.front() == '/') info.name.erase(0, 1);
  const json& state = field(*j, "State");
  info.state.status = value_or<std::string>(state, "Status", "");
  info.state.running = value_or<bool>(state, "Running", false);
  info.state.paused = value_or<bool>(state, "Paused", false);
  info.state.oom_killed = value_or<bool>(state, "OOMKilled", false);
  info.state.exit_code = value_or<int>(state, "ExitCode", 0);
  info.state.pid = value_or<int>(state, "Pid", 0);
  info.state.error = value_or<std::string>(state, "Error", "");
  info.labels = string_map(field(field(*j, "Config"), "Labels"));
  info.network_ips = network_ips(field(field(*j, "NetworkSettings"), "Networks"));
  return info;
}

core::Result<void> DockerEngine::pause_container(const std::string& id_or_name) const {
  auto id = path_name(id_or_name, "container");
  if (!id) return id.error();
  auto r = call("POST", "/containers/" + *id + "/pause", "", "pause container " + *id);
  if (!r) return r.error();
  return {};
}

core::Result<void> DockerEngine::unpause_container(const std::string& id_or_name) const {
  auto id = path_name(id_or_name, "container");
  if (!id) return id.error();
  auto r = call("POST", "/containers/" + *id + "/unpause", "", "unpause container " + *id);
  if (!r) return r.error();
  return {};
}

core::Result<void> DockerEngine::kill_container(const std::string& id_or_name, const std::string& signal) const {
  auto id = path_name(id_or_name, "container");
  if (!id) return id.error();
  auto r = call("POST", "/containers/" + *id + "/kill?signal=" + percent_encode(signal), "", "kill container " + *id);
  if (!r) return r.error();
  return {};
}

core::Result<void> DockerEngine::remove_container(const std::string& id_or_name) const {
  auto id = path_name(id_or_name, "container");
  if (!id) return id.error();
  auto r = call("DELETE", "/containers/" + *id + "?force=true&v=true", "", "remove container " + *id);
  if (!r) return r.error();
  return {};
}

core::Result<std::vector<ContainerSummary>> DockerEngine::list_containers(const std::vector<std::string>& labels) const {
  auto r = call("GET", "/containers/json?all=true&filters=" + label_filter(labels), "", "list containers");
  if (!r) return r.error();
  auto j = parse_body(*r, "list containers");
  if (!j) return j.error();
  std::vector<ContainerSummary> out;
  if (!j->is_array()) return out;
  for (const auto& c : *j) {
    ContainerSummary s;
    s.id = value_or<std::string>(c, "Id", "");
    for (auto name : string_list(field(c, "Names"))) {
      if (!name.empty() && name.front() == '/') name.erase(0, 1);
      s.names.push_back(std::move(name));
    }
    s.state = value_or<std::string>(c, "State", "");
    s.status = value_or<std::string>(c, "Status", "");
    s.labels = string_map(field(c, "Labels"));
    s.network_ips = network_ips(field(field(c, "NetworkSettings"), "Networks"));
    out.push_back(std::move(s));
  }
  return out;
}

core::Result<ImageInfo> DockerEngine::inspect_image(const std::string& name) const {
  auto image = path_name(name, "image");
  if (!image) return image.error();
  auto r = call("GET", "/images/" + *image + "/json", "", "inspect image " + *image);
  if (!r) return r.error();
  auto j = parse_body(*r, "inspect image");
  if (!j) return j.error();
  ImageInfo info;
  info.id = value_or<std::string>(*j, "Id", "");
  const json& config = field(*j, "Config");
  info.entrypoint = string_list(field(config, "Entrypoint"));
  info.cmd = string_list(field(config, "Cmd"));
  return info;
}

core::Result<std::string> DockerEngine::import_image(const std::string& tar, const std::string& repo,
                                                     const std::string& tag) const {
  auto r = call("POST", "/images/create?fromSrc=-&repo=" + percent_encode(repo) + "&tag=" + percent_encode(tag), tar,
                "import image " + repo + ":" + tag, "application/x-tar");
  if (!r) return r.error();
  // A stream of JSON progress objects; a failure after the 200 arrives as {"error": ...}.
  std::istringstream lines(r->body);
  std::string line;
  std::string id;
  while (std::getline(lines, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    if (j.contains("error")) {
      return core::make_error(core::Errc::unavailable,
                              "docker engine, import image " + repo + ": " + value_or<std::string>(j, "error", "?"));
    }
    const auto status = value_or<std::string>(j, "status", "");
    if (status.rfind("sha256:", 0) == 0) id = status;
  }
  if (id.empty()) return core::make_error(core::Errc::unavailable, "docker engine, import image " + repo + ": no image id in the answer");
  return id;
}

core::Result<std::string> DockerEngine::create_network(const std::string& name,
                                                       const std::map<std::string, std::string>& labels,
                                                       const std::string& bridge_name) const {
  json body{{"Name", name}, {"Driver", "bridge"}, {"CheckDuplicate", true}, {"Labels", labels}};
  if (!bridge_name.empty()) body["Options"] = {{"com.docker.network.bridge.name", bridge_name}};
  auto r = call("POST", "/networks/create", body.dump(), "create network " + name);
  if (!r) return r.error();
  auto j = parse_body(*r, "create network");
  if (!j) return j.error();
  auto id = value_or<std::string>(*j, "Id", "");
  if (id.empty()) return core::make_error(core::Errc::unavailable, "docker engine: create network answered no Id");
  return id;
}

core::Result<void> DockerEngine::remove_network(const std::string& id_or_name) const {
  auto id = path_name(id_or_name, "network");
  if (!id) return id.error();
  auto r = call("DELETE", "/networks/" + *id, "", "remove network " + *id);
  if (!r) return r.error();
  return {};
}

core::Result<std::vector<NetworkSummary>> DockerEngine::list_networks(const std::vector<std::string>& labels) const {
  auto r = call("GET", "/networks?filters=" + label_filter(labels), "", "list networks");
  if (!r) return r.error();
  auto j = parse_body(*r, "list networks");
  if (!j) return j.error();
  std::vector<NetworkSummary> out;
  if (!j->is_array()) return out;
  for (const auto& n : *j) {
    out.push_back(NetworkSummary{value_or<std::string>(n, "Id", ""), value_or<std::string>(n, "Name", ""),
                                 string_map(field(n, "Labels"))});
  }
  return out;
}

}  // namespace execd::gateway
