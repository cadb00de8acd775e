#include "api/capabilities_routes.hpp"

#include "http/json_io.hpp"

namespace execd::api {

nlohmann::json capabilities_json(const isolation::Capabilities& caps, const isolation::Limits& defaults) {
  nlohmann::json levels = nlohmann::json::object();
  for (const auto l : {isolation::Level::none, isolation::Level::process, isolation::Level::namespace_}) {
    const auto& s = caps.level(l);
    levels[std::string(isolation::level_name(l))] = {{"supported", s.supported}, {"reason", s.reason}};
  }
  nlohmann::json limits = nlohmann::json::object();
  nlohmann::json limit_defaults = nlohmann::json::object();
  for (const isolation::Limit l : isolation::kAllLimits) {
    const auto& s = caps.limit(l);
    const std::string key(isolation::field_name(l));
    limits[key] = {{"supported", s.supported},
                   {"mechanism", std::string(isolation::mechanism_name(s.mechanism))},
                   {"reason", s.reason}};
    if (auto v = defaults.get(l)) {
      limit_defaults[key] = *v;
    } else {
      limit_defaults[key] = nullptr;
    }
  }
  limit_defaults["isolation"] = std::string(isolation::level_name(defaults.level));
  limit_defaults["network"] = defaults.has_network();
  return {{"levels", levels},
          {"limits", limits},
          {"cgroup",
           {{"version", caps.cgroup_version}, {"controllers", caps.cgroup_controllers}, {"reason", caps.cgroup_reason}}},
          {"bwrap", caps.bwrap_path},
          {"defaults", limit_defaults}};
}

std::shared_ptr<isolation::Isolator> make_isolator(const core::Config& config, const std::string& runtime_dir) {
  isolation::Isolator::Options o;
  auto level = isolation::parse_level(config.isolation);  // parse_config accepted only valid names
  o.defaults.level = level ? *level : isolation::Level::none;
  const std::pair<isolation::Limit, uint64_t> flags[] = {
      {isolation::Limit::memory_mb, config.memory_limit_mb},   {isolation::Limit::processes, config.max_processes},
      {isolation::Limit::cpu_time_s, config.cpu_time_limit_s}, {isolation::Limit::output_bytes, config.max_output_bytes},
      {isolation::Limit::open_files, config.max_open_files},   {isolation::Limit::disk_mb, config.disk_limit_mb},
  };
  for (const auto& [limit, value] : flags) {
    if (value != 0) o.defaults.set(limit, value);  // 0: the flag's "no limit"
  }
  o.workspace_base = runtime_dir;
  o.cgroup_pool_size = config.cgroup_pool_size;
  return std::make_shared<isolation::Isolator>(std::move(o));
}

void register_capabilities_routes(http::HttpServer& server, std::shared_ptr<isolation::Isolator> isolator) {
  server.route(http::HttpServer::Method::get, "/capabilities",
               [isolator](const httplib::Request&, httplib::Response& res) {
                 http::write_json(res, capabilities_json(isolator->capabilities(), isolator->defaults()));
               });
}

}  // namespace execd::api
