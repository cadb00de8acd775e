#pragma once

#include <string>

#include "core/result.hpp"

namespace execd::core {

/// Sets up spdlog's default logger once, at start-up: stderr, or `file` when given.
/// Every module logs through spdlog's free functions afterwards.
Result<void> setup_logging(const std::string& level, const std::string& file);

}  // namespace execd::core
