#include "gateway/sandbox.hpp"

#include <array>
#include <utility>

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

bool is_final(SandboxState state) { return state == SandboxState::terminated || state == SandboxState::failed; }

}  // namespace execd::gateway
