#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace execd::core {

/// Lowercase hex of `n` bytes (2n characters).
std::string to_hex(const unsigned char* p, size_t n);

/// `text` for a URL query value or path segment: every byte but the unreserved ones
/// (RFC 3986: ALPHA, DIGIT, "-", ".", "_", "~") as %XX.
std::string percent_encode(std::string_view text);

/// Equal-time comparison for secrets (access tokens, message signatures): the time taken
/// depends only on `expected`'s length, never on where `given` first differs.
bool constant_time_equals(std::string_view expected, std::string_view given);

}  // namespace execd::core
