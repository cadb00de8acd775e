#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace execd::http {

/// A streaming multipart/form-data parser: feed() the body in pieces of any size, get
/// each part's field name at its start and its bytes as they arrive, without holding a
/// part in memory. It exists because cpp-httplib 0.11's own multipart reader searches
/// for the boundary byte by byte, which cost more CPU than the disk writes of an upload;
/// this one uses memmem and hands over large spans.
class MultipartReader {
 public:
  using PartBegin = std::function<bool(const std::string& name, const std::string& filename)>;
  using PartData = std::function<bool(std::string_view bytes)>;

  /// `boundary` as in the Content-Type header (without the leading "--").
  MultipartReader(std::string boundary, PartBegin on_begin, PartData on_data);

  /// The boundary parameter of a multipart Content-Type; invalid_file when absent.
  static core::Result<std::string> boundary_of(const std::string& content_type);

  /// False when a callback refused, or the body is malformed (error() says why).
  bool feed(std::string_view chunk);
  /// True once the closing boundary has been seen.
  [[nodiscard]] bool done() const { return state_ == State::done; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  enum class State { preamble, headers, data, after_delimiter, done, failed };
  bool fail(std::string why);
  bool parse_headers(std::string_view block);

  std::string delimiter_;  // "\r\n--" + boundary
  PartBegin on_begin_;
  PartData on_data_;
  State state_ = State::preamble;
  std::string buf_;
  std::string error_;
};

}  // namespace execd::http
