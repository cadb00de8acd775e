// Fuzzes api::parse_range (the Range header of GET /files/download) against a file size
// taken from the input: never a crash, and a range it returns lies inside the file.
// Input: 8 bytes of file size (small sizes more likely), then the header value.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "api/download_routes.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t file_size = 0;
  std::memcpy(&file_size, data, 8);
  if (data[0] & 1) file_size %= 4096;  // mostly sizes where the edges are reachable
  const std::string header(reinterpret_cast<const char*>(data) + 8, size - 8);
  for (const std::string& h : {header, "bytes=" + header}) {
    auto r = execd::api::parse_range(h, file_size);
    if (!r || !r->has_value()) continue;
    const auto& range = **r;
    if (range.start > range.end || range.end >= file_size) {
      std::fprintf(stderr, "range %llu-%llu outside a %llu-byte file\n", static_cast<unsigned long long>(range.start),
                   static_cast<unsigned long long>(range.end), static_cast<unsigned long long>(file_size));
      std::abort();
    }
  }
  return 0;
}
