// Fuzzes jupyter::decode (verify, then parse) on frames a kernel could send, and what
// the kernel client does with a decoded message next (type, ids, stream text).
// A decoded message must be safe to use: its accessors do not throw, and a stream's
// text literal is a JSON string (it is pasted into event JSON without re-parsing).
//
// Input: byte 0 holds flags (bit 0: re-sign the frames with the key so parsing is
// reached; bit 1: an empty key, which signs nothing); the rest is frames split at NUL
// bytes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/json_parse.hpp"
#include "jupyter/message.hpp"

namespace jupyter = execd::jupyter;

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "jupyter_message: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::string> frames;
  size_t start = 0;
  for (size_t i = 0; i <= rest.size(); ++i) {
    if (i == rest.size() || rest[i] == '\0') {
      frames.emplace_back(rest.substr(start, i - start));
      start = i + 1;
    }
  }
  const jupyter::HmacSigner signer((flags & 2) != 0 ? "" : "a0b1c2d3-fuzz-key");
  if ((flags & 1) != 0) {
    for (size_t d = 0; d < frames.size(); ++d) {
      if (frames[d] != "<IDS|MSG>" || frames.size() < d + 6) continue;
      frames[d + 1] = signer.sign({frames[d + 2], frames[d + 3], frames[d + 4], frames[d + 5]});
      break;
    }
  }
  try {
    auto m = jupyter::decode(frames, signer);
    if (!m) return 0;
    // What KernelClient reads of every message it accepts.
    (void)m->type();
    (void)m->id();
    (void)m->parent_id();
    if (!m->stream_text_literal.empty()) {
      auto text = execd::core::parse_json(m->stream_text_literal);
      if (!text || !text->is_string()) fail("stream text literal is not a JSON string: " + m->stream_text_literal.substr(0, 200));
    }
    // Re-encoding what was decoded must verify again.
    auto again = jupyter::decode(jupyter::encode(*m, signer), signer);
    if (!again) fail("re-encoded message does not decode: " + again.error().message);
  } catch (const std::exception& e) {
    fail(std::string("exception escaped: ") + e.what());
  }
  return 0;
}
