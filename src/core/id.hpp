#pragma once

#include <string>

namespace execd::core {

/// 32 lowercase hex characters from the OS CSPRNG (a UUIDv4 without dashes): the id
/// format clients know for commands and contexts. Thread-safe.
std::string new_id();

/// A UUIDv4 with dashes (36 characters): the id format of bash sessions.
std::string new_uuid();

/// `n` random bytes from getrandom(2), hex-encoded (2n characters).
std::string random_hex(size_t n_bytes);

}  // namespace execd::core
