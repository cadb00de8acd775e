// Fuzzes files::glob_match (GET /files/search's pattern) for time: one match of a
// pattern and a name of a few KiB must take well under 100 ms of CPU (the search walks every
// file with it; an exponential matcher lets one request keep a core busy for minutes).
// Input: pattern, a NUL byte, name (no NUL: the name without one when there is none).
#include <time.h>

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

// CPU time of this thread: on a shared machine wall time also counts the time the
// scheduler gave to others (a 1 ms match was once measured at 101 ms).
std::chrono::nanoseconds match_cpu_time(const std::string& pattern, const std::string& name) {
  timespec a{}, b{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
  (void)execd::files::glob_match(pattern, name);
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
  return std::chrono::seconds(b.tv_sec - a.tv_sec) + std::chrono::nanoseconds(b.tv_nsec - a.tv_nsec);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto max = limit();
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const std::string pattern = in.substr(0, nul);
  std::string name = nul == std::string::npos ? "" : in.substr(nul + 1);
  name.erase(std::remove(name.begin(), name.end(), '\0'), name.end());
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(match_cpu_time(pattern, name));
  // Over the bound: the best of three more runs decides (a page fault storm or a
  // sanitizer's allocator hiccup is not the matcher's cost).
  for (int i = 0; i < 3 && took > max; ++i) {
    took = std::min(took, std::chrono::duration_cast<std::chrono::milliseconds>(match_cpu_time(pattern, name)));
  }
  if (took > max) {
    std::fprintf(stderr, "glob_match took %lld ms of CPU (limit %lld ms)\n  pattern: %s\n  name: %s\n",
                 static_cast<long long>(took.count()), static_cast<long long>(max.count()), printable(pattern).c_str(),
                 printable(name).c_str());
    std::abort();
  }
  return 0;
}
