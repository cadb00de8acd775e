#pragma once

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace execd::core {

/// Deepest nesting of arrays and objects any JSON from outside may have. Deeper input is
/// refused before it is parsed: nlohmann's DOM (and code that walks it) recurses per level,
/// and 300,000 levels overflow a thread's stack.
inline constexpr size_t kMaxJsonDepth = 256;

/// Parses `text` (request bodies, Jupyter message parts, upload metadata) with nesting
/// limited to `max_depth`. Errors are invalid_argument, naming the depth or the parse
/// problem; never an exception, whatever the bytes. Linear in the size of `text`.
Result<nlohmann::json> parse_json(std::string_view text, size_t max_depth = kMaxJsonDepth);

/// True when no array or object in `text` nests deeper than `max_depth` (brackets inside
/// strings do not count). Does not check that `text` is JSON.
bool json_depth_within(std::string_view text, size_t max_depth);

}  // namespace execd::core
