// Fuzzes http::MultipartReader: a body fed whole and the same body fed in random chunk
// sizes must yield the same parts, bytes and outcome (the reader promises "pieces of
// any size"), and boundary_of must never throw or crash on a Content-Type.
//
// Input: byte 0 picks the boundary's length (1..70, the RFC 2046 limit), the next
// bytes are the boundary, then the body; chunk sizes come from a PRNG seeded by the body.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "http/multipart_reader.hpp"

using execd::http::MultipartReader;

namespace {

struct Outcome {
  std::vector<std::string> events;  // "B:name/filename" then "D:bytes" runs merged per part
  bool ok = true;
  bool done = false;
  std::string error;
};

Outcome run(const std::string& boundary, std::string_view body, uint32_t seed, bool chunked) {
  Outcome out;
  auto on_begin = [&](const std::string& name, const std::string& filename) {
    out.events.push_back("B:" + name + "/" + filename);
    out.events.emplace_back("D:");
    return true;
  };
  auto on_data = [&](std::string_view bytes) {
    if (bytes.empty()) {
      std::fprintf(stderr, "on_data called with an empty span\n");
      std::abort();
    }
    if (out.events.empty()) {
      std::fprintf(stderr, "on_data before any part began\n");
      std::abort();
    }
    out.events.back().append(bytes);
    return true;
  };
  MultipartReader reader(boundary, on_begin, on_data);
  std::minstd_rand rng(seed);
  size_t pos = 0;
  while (pos < body.size()) {
    size_t n = body.size() - pos;
    if (chunked) n = std::min<size_t>(n, 1 + rng() % 64);
    if (!reader.feed(body.substr(pos, n))) {
      out.ok = false;
      break;
    }
    pos += n;
  }
  out.done = reader.done();
  out.error = reader.error();
  return out;
}

// Size limits are checked only while the end of a header block or boundary line has not
// been seen, so a body fed whole may pass where the same body in pieces trips them.
bool is_size_limit(const std::string& e) {
  return e.find("larger than") != std::string::npos || e.find("malformed multipart boundary line") != std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  // boundary_of on the input as a Content-Type header value.
  {
    auto b = MultipartReader::boundary_of("multipart/form-data; " + std::string(in.substr(0, std::min<size_t>(size, 512))));
    if (b && (b->empty() || b->size() > 200)) std::abort();
  }
  const size_t blen = 1 + data[0] % 70;
  if (size < 1 + blen) return 0;
  const std::string boundary(in.substr(1, blen));
  const std::string_view body = in.substr(1 + blen);
  uint32_t seed = 0;
  for (unsigned char c : body.substr(0, 16)) seed = seed * 31 + c;

  const Outcome whole = run(boundary, body, seed, false);
  const Outcome pieces = run(boundary, body, seed, true);
  if (is_size_limit(whole.error) || is_size_limit(pieces.error)) return 0;
  if (whole.ok != pieces.ok || whole.done != pieces.done || whole.events != pieces.events) {
    std::fprintf(stderr, "multipart: fed whole -> ok=%d done=%d parts=%zu err='%s'; in pieces -> ok=%d done=%d parts=%zu err='%s'\n",
                 whole.ok, whole.done, whole.events.size() / 2, whole.error.c_str(), pieces.ok, pieces.done,
                 pieces.events.size() / 2, pieces.error.c_str());
    std::abort();
  }
  return 0;
}
