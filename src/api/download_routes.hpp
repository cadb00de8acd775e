#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "files/file_service.hpp"
#include "http/http_server.hpp"

namespace execd::api {

/// GET /files/download?path=P — streamed from disk (never buffered whole), with
/// Content-Length, Content-Disposition, `Range: bytes=a-b | a- | -n` (first range of a
/// list) -> 206 + Content-Range, unsatisfiable -> 416; `offset`/`limit` select lines
/// (1-based) as text/plain instead.
void register_download_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files);

struct ByteRange {
  uint64_t start = 0;
  uint64_t end = 0;  ///< inclusive
};
/// Parses the first range of a `bytes=` Range header against `size`. nullopt in
/// `range` with ok: no usable range header; range_not_satisfiable when outside the file;
/// invalid_argument when malformed.
core::Result<std::optional<ByteRange>> parse_range(const std::string& header, uint64_t size);

/// Picks lines `offset` (1-based) .. `offset + limit - 1` (limit 0: to the end) out of
/// a byte stream fed in chunks of any size, and writes them joined by '\n' without a
/// trailing one; "\r\n" is one terminator, a lone '\r' is text. It holds no line in
/// memory (at most one byte of lookahead), so a file without newlines cannot make it
/// grow. Pure; the fuzzing entry point for line reads.
class LineSelector {
 public:
  LineSelector(uint64_t offset, uint64_t limit) : offset_(offset), limit_(limit) {}
  /// Appends to `out` what of `chunk` is selected.
  void feed(std::string_view chunk, std::string& out);
  /// The input ended: nothing more to append (a held '\r' ends the last line).
  void finish(std::string& out);
  /// Every selected line is complete: the rest of the input need not be read.
  [[nodiscard]] bool done() const { return limit_ > 0 && line_ - offset_ >= limit_ && line_ >= offset_; }

 private:
  [[nodiscard]] bool selected() const { return line_ >= offset_ && (limit_ == 0 || line_ - offset_ < limit_); }

  uint64_t offset_;
  uint64_t limit_;
  uint64_t line_ = 1;  // the line being read
  uint64_t emitted_ = 0;
  bool line_open_ = false;  // the current line has been started in the output
  bool held_cr_ = false;    // a '\r' that may be half of "\r\n"
};

}  // namespace execd::api
