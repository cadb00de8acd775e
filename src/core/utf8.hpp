#pragma once

#include <string_view>

namespace execd::core {

/// Whether `s` is well-formed UTF-8 (eight ASCII bytes at a time: text is mostly ASCII).
bool valid_utf8(std::string_view s);

}  // namespace execd::core
