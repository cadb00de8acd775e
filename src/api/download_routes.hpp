#pragma once

#include <memory>

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

}  // namespace execd::api
