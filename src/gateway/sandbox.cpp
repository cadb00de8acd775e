#include "gateway/sandbox.hpp"

#include <array>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/json_parse.hpp"

namespace execd::gateway {

namespace {

constexpr std::array<std::pair<SandboxState, std::string_view>, 8> kStateNames{{
    {SandboxState::pending, "Pending"},
    {SandboxState::running, "Running"},
    {SandboxState::pausing, "Pausing"},
    {SandboxState::paused, "Paused"},
    {SandboxState::resuming, "Resuming"},
    {SandboxState::stopping, "Stopping"},
    {SandboxState::terminated, "Terminated"},
    {SandboxState::failed, "Failed"},
}};

}  // namespace

std::string_view to_string(SandboxState state) {
  for (const auto& [s, name] : kStateNames) {
    if (s == state) return name;
  }
  return "Unknown";
}

std::optional<SandboxState> parse_state(std::string_view text) {
  for (const auto& [s, name] : kStateNames) {
    if (name == text) return s;
  }
  return std::nullopt;
}

std::string spec_to_json(const SandboxSpec& spec) {
  nlohmann::json j = {{"image", spec.image},
                      {"entrypoint", spec.entrypoint},
                      {"env", spec.env},
                      {"metadata", spec.metadata},
                      {"limits",
                       {{"cpu_millis", spec.limits.cpu_millis},
                        {"memory_bytes", spec.limits.memory_bytes},
                        {"max_pids", spec.limits.max_pids},
                        {"disk_bytes", spec.limits.disk_bytes}}}};
  if (spec.timeout) j["timeout_s"] = spec.timeout->count();
  return j.dump();
}

core::Result<SandboxSpec> spec_from_json(const std::string& text) {
  auto parsed = core::parse_json(text);
  if (!parsed) return parsed.error();
  try {
    const nlohmann::json& j = *parsed;
    SandboxSpec spec;
    spec.image = j.at("image").get<std::string>();
    spec.entrypoint = j.at("entrypoint").get<std::vector<std::string>>();
    spec.env = j.at("env").get<std::map<std::string, std::string>>();
    spec.metadata = j.at("metadata").get<std::map<std::string, std::string>>();
    const nlohmann::json& l = j.at("limits");
    spec.limits.cpu_millis = l.at("cpu_millis").get<uint32_t>();
    spec.limits.memory_bytes = l.at("memory_bytes").get<uint64_t>();
    spec.limits.max_pids = l.at("max_pids").get<uint32_t>();
    spec.limits.disk_bytes = l.at("disk_bytes").get<uint64_t>();
    if (j.contains("timeout_s")) spec.timeout = std::chrono::seconds(j.at("timeout_s").get<int64_t>());
    return spec;
  } catch (const nlohmann::json::exception& e) {
    return core::make_error(core::Errc::internal, std::string("stored spec is malformed: ") + e.what());
  }
}

bool is_final(SandboxState state) {
  return state == SandboxState::terminated || state == SandboxState::failed;
}

}  // namespace execd::gateway
