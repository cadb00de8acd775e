#pragma once

#include <chrono>
#include <cstddef>
#include <string_view>

#include "core/result.hpp"

namespace execd::process {

/// Writes all of `bytes` to a non-blocking pipe, waiting up to `timeout` in total while
/// it is full. `written` reports progress either way. unavailable when the reader is not
/// reading in time, conflict when it has closed its end (EPIPE).
core::Result<void> write_all(int fd, std::string_view bytes, std::chrono::milliseconds timeout, size_t& written);

}  // namespace execd::process
