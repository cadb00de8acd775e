#include "api/download_routes.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdio>

#include "api/request_fields.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

constexpr size_t kChunk = 256 * 1024;

bool parse_u64(std::string_view s, uint64_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
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

// Selected lines (1-based `offset`, at most `limit`), joined by '\n' without a trailing
// one, "\r\n" read as one terminator; streamed so a huge file is never held whole.
void serve_lines(httplib::Response& res, std::shared_ptr<core::UniqueFd> fd, uint64_t offset, uint64_t limit) {
  struct State {
    std::string partial;
    uint64_t line = 0;  // lines completed so far
    uint64_t emitted = 0;
    off_t pos = 0;
    bool eof = false;
  };
  auto st = std::make_shared<State>();
  res.status = 200;
  res.set_chunked_content_provider("text/plain; charset=utf-8", [fd, st, offset, limit](size_t, httplib::DataSink& sink) {
    auto emit = [&](std::string line, std::string& out) {
      ++st->line;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (st->line < offset || (limit > 0 && st->emitted >= limit)) return;
      if (st->emitted++ > 0) out += '\n';
      out += line;
    };
    std::string out;
    if (!st->eof && (limit == 0 || st->emitted < limit)) {
      std::string buf(kChunk, '\0');
      const ssize_t n = ::pread(fd->get(), buf.data(), buf.size(), st->pos);
      if (n > 0) {
        st->pos += n;
        std::string_view chunk(buf.data(), static_cast<size_t>(n));
        for (size_t nl; (nl = chunk.find('\n')) != std::string_view::npos; chunk.remove_prefix(nl + 1)) {
          emit(st->partial + std::string(chunk.substr(0, nl)), out);
          st->partial.clear();
        }
        st->partial.append(chunk);
      } else {
        st->eof = true;
        if (!st->partial.empty()) emit(std::move(st->partial), out);
      }
    }
    if (!out.empty() && !sink.write(out.data(), out.size())) return false;
    if (st->eof || (limit > 0 && st->emitted >= limit)) sink.done();
    return true;
  });
}

}  // namespace

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
    // We answer Range ourselves (clamping, suffix ranges, JSON 416); httplib must not
    // apply its own slicing on top. The Request is httplib's own non-const object.
    const_cast<httplib::Request&>(req).ranges.clear();

    if (req.has_param("offset") || req.has_param("limit")) {
      if (has_range) {
        return http::write_error(res, core::make_error(core::Errc::invalid_argument, "use either Range or offset/limit, not both"));
      }
      uint64_t offset = 1, limit = 0;
      for (const char* key : {"offset", "limit"}) {
        if (!req.has_param(key)) continue;
        uint64_t v = 0;
        if (!parse_u64(req.get_param_value(key), v) || v < 1) {
          return http::write_error(res, core::make_error(core::Errc::invalid_argument, std::string(key) + " must be an integer >= 1, got '" + req.get_param_value(key) + "'"));
        }
        (std::string(key) == "offset" ? offset : limit) = v;
      }
      return serve_lines(res, fd, offset, limit);
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
