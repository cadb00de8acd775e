// Fuzzes files::glob_match (GET /files/search's pattern) for time: one match of a
// pattern and a name of a few KiB must take well under 100 ms (the search walks every
// file with it; an exponential matcher lets one request keep a core busy for minutes).
// Input: pattern, a NUL byte, name (no NUL: the name without one when there is none).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "files/file_service.hpp"

namespace {

std::chrono::milliseconds limit() {
  // Sanitizers and a loaded machine slow everything; FUZZ_GLOB_LIMIT_MS overrides.
  const char* env = std::getenv("FUZZ_GLOB_LIMIT_MS");
  return std::chrono::milliseconds(env != nullptr ? std::atoi(env) : 100);
}

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 200)) {
    char b[8];
    std::snprintf(b, sizeof b, c >= 0x20 && c < 0x7f && c != '\\' ? "%c" : "\\x%02x", c);
    out += b;
  }
  return s.size() > 200 ? out + "...(" + std::to_string(s.size()) + " bytes)" : out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto max = limit();
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const std::string pattern = in.substr(0, nul);
  std::string name = nul == std::string::npos ? "" : in.substr(nul + 1);
  name.erase(std::remove(name.begin(), name.end(), '\0'), name.end());
  const auto t0 = std::chrono::steady_clock::now();
  (void)execd::files::glob_match(pattern, name);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  if (took > max) {
    std::fprintf(stderr, "glob_match took %lld ms (limit %lld ms)\n  pattern: %s\n  name: %s\n",
                 static_cast<long long>(took.count()), static_cast<long long>(max.count()), printable(pattern).c_str(),
                 printable(name).c_str());
    std::abort();
  }
  return 0;
}
