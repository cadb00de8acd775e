#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include <httplib.h>

#include "core/result.hpp"

namespace execd::api {

/// Strict reading of numeric query parameters, shared by every route that takes one
/// (cursors, limits, waits, depths, line ranges): a value a client got wrong is a 400
/// naming the parameter, never silently read as absent or as 0.

/// `text` as a decimal integer in [min, max]: ASCII digits only (no sign, space, `0x` or
/// exponent), at most 20 of them, no overflow. invalid_argument otherwise, naming
/// `name` and quoting (a prefix of) `text`. Pure; the fuzzing entry point.
core::Result<uint64_t> parse_uint_param(std::string_view name, std::string_view text, uint64_t min = 0,
                                        uint64_t max = std::numeric_limits<uint64_t>::max());

/// The query parameter `name` through parse_uint_param: std::nullopt when absent;
/// invalid_argument when given more than once, empty, or not an integer in [min, max].
core::Result<std::optional<uint64_t>> uint_query(const httplib::Request& req, const std::string& name, uint64_t min = 0,
                                                 uint64_t max = std::numeric_limits<uint64_t>::max());

}  // namespace execd::api
