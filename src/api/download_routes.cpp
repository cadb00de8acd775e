#include "api/download_routes.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdio>

#include "api/query_params.hpp"
#include "api/request_fields.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

constexpr size_t kChunk = 256 * 1024;

// Digits only; a number too large for 64 bits saturates (a Range end or suffix past any
// file size means "to the end", RFC 9110 §14.1.2).
bool parse_u64(std::string_view s, uint64_t& v) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string_view::npos) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc::result_out_of_range) v = UINT64_MAX;
  return true;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

std::string content_disposition(const std::string& abs) {
  const std::string base = abs.substr(abs.rfind('/') + 1);
  bool ascii = true;
  std::string enc;
  for (unsigned char c : base) {
    if (c >= 0x80 || c == '"' || c == '\\' || c < 0x20) ascii = false;
    if (std::isalnum(c) != 0 || c == '.' || c == '-' || c == '_' || c == '~') {
      enc += static_cast<char>(c);
    } else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", c);
      enc += b;
    }
  }
  if (ascii) return "attachment; filename=\"" + base + "\"";
  return "attachment; filename=\"" + enc + "\"; filename*=UTF-8''" + enc;
}

void serve_lines(httplib::Response& res, std::shared_ptr<core::UniqueFd> fd, uint64_t offset, uint64_t limit) {
  struct State {
    LineSelector lines;
    off_t pos = 0;
  };
  auto st = std::make_shared<State>(State{LineSelector(offset, limit), 0});
  res.status = 200;
  res.set_chunked_content_provider("text/plain; charset=utf-8", [fd, st](size_t, httplib::DataSink& sink) {
    std::string out;
    std::string buf(kChunk, '\0');
    const ssize_t n = ::pread(fd->get(), buf.data(), buf.size(), st->pos);
    const bool eof = n <= 0;
    if (eof) {
      st->lines.finish(out);
    } else {
      st->pos += n;
      st->lines.feed(std::string_view(buf.data(), static_cast<size_t>(n)), out);
    }
    if (!out.empty() && !sink.write(out.data(), out.size())) return false;
    if (eof || st->lines.done()) sink.done();
    return true;
  });
}

}  // namespace

void LineSelector::feed(std::string_view chunk, std::string& out) {
  while (!chunk.empty() && !done()) {
    const size_t nl = chunk.find('\n');
    std::string_view text = chunk.substr(0, nl);
    if (selected() && (!text.empty() || nl != std::string_view::npos || held_cr_)) {
      if (!line_open_) {
        if (emitted_++ > 0) out += '\n';
        line_open_ = true;
      }
      if (held_cr_ && !text.empty()) out += '\r';  // it was text, not half of "\r\n"
      held_cr_ = false;
      if (!text.empty() && text.back() == '\r') {
        text.remove_suffix(1);
        held_cr_ = true;
      }
      out.append(text);
    } else if (!text.empty()) {
      held_cr_ = text.back() == '\r';
    }
    if (nl == std::string_view::npos) return;
    held_cr_ = false;
    line_open_ = false;
    ++line_;
    chunk.remove_prefix(nl + 1);
  }
}

void LineSelector::finish(std::string& out) {
  (void)out;  // a held '\r' ends the last line, as "\r\n" would
  held_cr_ = false;
}

core::Result<std::optional<ByteRange>> parse_range(const std::string& header, uint64_t size) {
  const std::string h = trim(header);
  if (h.rfind("bytes=", 0) != 0) return core::make_error(core::Errc::range_not_satisfiable, "Range must be bytes=..., got '" + header + "'");
  std::string first = h.substr(6);
  if (const auto comma = first.find(','); comma != std::string::npos) first = first.substr(0, comma);
  first = trim(first);
  const auto dash = first.find('-');
  if (dash == std::string::npos) return core::make_error(core::Errc::range_not_satisfiable, "malformed Range: " + header);
  const std::string a = first.substr(0, dash);
  const std::string b = first.substr(dash + 1);
  uint64_t x = 0, y = 0;
  ByteRange r;
  if (a.empty()) {  // suffix: the last y bytes
    if (!parse_u64(b, y) || y == 0) return core::make_error(core::Errc::range_not_satisfiable, "malformed Range: " + header);
    if (size == 0) return core::make_error(core::Errc::range_not_satisfiable, "range outside an empty file");
    r.start = y >= size ? 0 : size - y;
    r.end = size - 1;
    return std::optional<ByteRange>(r);
  }
  if (!parse_u64(a, x) || (!b.empty() && !parse_u64(b, y)) || (!b.empty() && y < x)) {
    return core::make_error(core::Errc::range_not_satisfiable, "malformed Range: " + header);
  }
  if (x >= size) {
    return core::make_error(core::Errc::range_not_satisfiable,
                            "range starts at " + std::to_string(x) + ", past the end of a " + std::to_string(size) + "-byte file");
  }
  r.start = x;
  r.end = b.empty() ? size - 1 : std::min(y, size - 1);
  return std::optional<ByteRange>(r);
}

void register_download_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files) {
  server.route(http::HttpServer::Method::get, R"(/files/download)", [files](const httplib::Request& req, httplib::Response& res) {
    auto path = required_query(req, "path");
    if (!path) return http::write_error(res, path.error());
    auto file = files->open_read(*path);
    if (!file) return http::write_error(res, file.error());
    auto fd = std::make_shared<core::UniqueFd>(std::move(file->fd));
    const bool has_range = req.has_header("Range");
    // We answer Range ourselves (clamping, suffix ranges, JSON 416) from the header;
    // HttpServer has already stopped httplib from slicing the answer on top.

    if (req.has_param("offset") || req.has_param("limit")) {
      if (has_range) {
        return http::write_error(res, core::make_error(core::Errc::invalid_argument, "use either Range or offset/limit, not both"));
      }
      auto offset = uint_query(req, "offset", 1);
      if (!offset) return http::write_error(res, offset.error());
      auto limit = uint_query(req, "limit", 1);
      if (!limit) return http::write_error(res, limit.error());
      return serve_lines(res, fd, offset->value_or(1), limit->value_or(0));
    }

    const uint64_t size = file->size;
    uint64_t start = 0, length = size;
    res.status = 200;
    if (has_range) {
      auto range = parse_range(req.get_header_value("Range"), size);
      if (!range) {
        res.set_header("Content-Range", "bytes */" + std::to_string(size));
        return http::write_error(res, range.error());
      }
      start = (*range)->start;
      length = (*range)->end - (*range)->start + 1;
      res.status = 206;
      res.set_header("Content-Range", "bytes " + std::to_string(start) + "-" + std::to_string((*range)->end) + "/" + std::to_string(size));
    }
    res.set_header("Accept-Ranges", "bytes");
    res.set_header("Content-Disposition", content_disposition(file->abs));
    if (length == 0) {
      res.set_content("", "application/octet-stream");
      return;
    }
    res.set_content_provider(length, "application/octet-stream",
                             [fd, start](size_t offset, size_t want, httplib::DataSink& sink) {
                               std::string buf(std::min(want, kChunk), '\0');
                               const ssize_t n = ::pread(fd->get(), buf.data(), buf.size(), static_cast<off_t>(start + offset));
                               // A file that shrank meanwhile cannot fill the promised length: end the connection.
                               if (n <= 0) return false;
                               return sink.write(buf.data(), static_cast<size_t>(n));
                             });
  });
}

}  // namespace execd::api
