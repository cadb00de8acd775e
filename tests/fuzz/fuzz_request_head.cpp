// Fuzzes http::check_request_head and find_head_end, the checks every request head goes
// through before httplib parses it (request smuggling, oversized heads). Never a crash;
// a refusal has one of the documented statuses and a message; an accepted head's facts
// point inside the input; find_head_end lands just past a "\r\n\r\n".
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/request_head.hpp"

namespace http = execd::http;

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "request_head: %s\n", what.c_str());
  std::abort();
}

void check(std::string_view head, const http::HeadLimits& limits) {
  const http::HeadCheck c = http::check_request_head(head, limits);
  if (!c) {
    if (c.status != 400 && c.status != 414 && c.status != 416 && c.status != 431 && c.status != 501) {
      fail("refused with undocumented status " + std::to_string(c.status));
    }
    if (c.message.empty()) fail("refused without a message");
    return;
  }
  const http::HeadInfo& info = *c.info;
  if (info.head_bytes > head.size()) fail("head_bytes past the input");
  if (!info.method.empty() && (info.method.data() < head.data() || info.method.data() + info.method.size() > head.data() + head.size())) {
    fail("method is not a view of the input");
  }
  if (info.header_count > limits.max_header_count) fail("more headers accepted than the limit");
  if (info.is_chunked && info.content_length) fail("accepted both chunked and Content-Length");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (auto end = http::find_head_end(bytes)) {
    if (*end < 4 || *end > size || bytes.substr(*end - 4, 4) != "\r\n\r\n") fail("find_head_end not just past CRLFCRLF");
    if (bytes.substr(0, *end - 1).find("\r\n\r\n") != std::string_view::npos) fail("find_head_end missed an earlier end");
  } else if (bytes.find("\r\n\r\n") != std::string_view::npos) {
    fail("find_head_end missed a CRLFCRLF");
  }
  check(bytes, http::HeadLimits{});
  http::HeadLimits small;
  small.max_header_count = 3;
  small.max_head_bytes = 256;
  small.max_target_bytes = 32;
  small.max_range_bytes = 16;
  check(bytes, small);
  return 0;
}
