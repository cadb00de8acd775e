#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace execd::core {

/// Writes all of `bytes` to a blocking descriptor (a file), retrying short writes and
/// EINTR. False with errno set on failure.
bool write_all(int fd, std::string_view bytes);

/// write_all at `offset` (pwrite), leaving the file offset alone.
bool pwrite_all(int fd, std::string_view bytes, uint64_t offset);

/// The whole content of a (small) file, such as one under /proc; empty when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace execd::core
