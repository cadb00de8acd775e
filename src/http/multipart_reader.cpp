#include "http/multipart_reader.hpp"

#include <cstring>

namespace execd::http {
namespace {

constexpr size_t kMaxHeaderBlock = 16 * 1024;

size_t find(std::string_view hay, std::string_view needle, size_t from = 0) {
  if (from > hay.size()) return std::string_view::npos;
  const void* p = ::memmem(hay.data() + from, hay.size() - from, needle.data(), needle.size());
  return p == nullptr ? std::string_view::npos : static_cast<size_t>(static_cast<const char*>(p) - hay.data());
}

// The value of `key="..."` (or key=token) in a header's parameters.
std::string param(std::string_view header, const std::string& key) {
  size_t pos = 0;
  while ((pos = find(header, key + "=", pos)) != std::string_view::npos) {
    const bool at_boundary = pos == 0 || header[pos - 1] == ';' || header[pos - 1] == ' ' || header[pos - 1] == '\t';
    pos += key.size() + 1;
    if (!at_boundary) continue;
    if (pos < header.size() && header[pos] == '"') {
      const size_t end = header.find('"', pos + 1);
      return std::string(header.substr(pos + 1, end == std::string_view::npos ? std::string_view::npos : end - pos - 1));
    }
    const size_t end = header.find_first_of("; \t", pos);
    return std::string(header.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos));
  }
  return {};
}

}  // namespace

MultipartReader::MultipartReader(std::string boundary, PartBegin on_begin, PartData on_data)
    : delimiter_("\r\n--" + boundary), on_begin_(std::move(on_begin)), on_data_(std::move(on_data)) {}

core::Result<std::string> MultipartReader::boundary_of(const std::string& content_type) {
  if (content_type.rfind("multipart/form-data", 0) != 0) {
    return core::make_error(core::Errc::invalid_file, "expected Content-Type multipart/form-data, got '" + content_type + "'");
  }
  std::string b = param(content_type, "boundary");
  if (b.empty() || b.size() > 200) return core::make_error(core::Errc::invalid_file, "multipart Content-Type has no usable boundary");
  return b;
}

bool MultipartReader::fail(std::string why) {
  state_ = State::failed;
  error_ = std::move(why);
  return false;
}

bool MultipartReader::parse_headers(std::string_view block) {
  std::string name, filename;
  size_t start = 0;
  while (start < block.size()) {
    size_t end = find(block, "\r\n", start);
    if (end == std::string_view::npos) end = block.size();
    const std::string_view line = block.substr(start, end - start);
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string key(line.substr(0, colon));
      for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (key == "content-disposition") {
        name = param(line.substr(colon + 1), "name");
        filename = param(line.substr(colon + 1), "filename");
      }
    }
    start = end + 2;
  }
  if (name.empty()) return fail("a multipart part has no Content-Disposition name");
  if (!on_begin_(name, filename)) return fail("");
  return true;
}

bool MultipartReader::feed(std::string_view chunk) {
  if (state_ == State::failed) return false;
  if (state_ == State::done) return true;  // an epilogue is ignored
  buf_.append(chunk);
  for (;;) {
    std::string_view b(buf_);
    switch (state_) {
      case State::preamble: {
        // The first boundary may open the body without the leading CRLF.
        const std::string_view first(delimiter_.data() + 2, delimiter_.size() - 2);
        const size_t at = find(b, first);
        if (at == std::string_view::npos) {
          if (buf_.size() > first.size()) buf_.erase(0, buf_.size() - first.size());
          return true;
        }
        buf_.erase(0, at + first.size());
        state_ = State::after_delimiter;
        continue;
      }
      case State::after_delimiter: {
        if (b.size() < 2) return true;
        if (b.substr(0, 2) == "--") {
          state_ = State::done;
          buf_.clear();
          return true;
        }
        // Transport padding before the CRLF is allowed.
        const size_t eol = find(b, "\r\n");
        if (eol == std::string_view::npos) {
          if (b.size() > 1024) return fail("malformed multipart boundary line");
          return true;
        }
        buf_.erase(0, eol + 2);
        state_ = State::headers;
        continue;
      }
      case State::headers: {
        // A part without headers starts with the blank line right away. Checked before the
        // search for CRLFCRLF, which would otherwise take the part's body and the next
        // boundary line for header lines (and answer differently as the bytes are chunked).
        if (b.size() < 2) return true;
        if (b.substr(0, 2) == "\r\n") return fail("a multipart part has no Content-Disposition name");
        const size_t end = find(b, "\r\n\r\n");
        if (end == std::string_view::npos) {
          if (b.size() > kMaxHeaderBlock) return fail("multipart part headers are larger than 16 KiB");
          return true;
        }
        if (!parse_headers(b.substr(0, end))) return false;
        buf_.erase(0, end + 4);
        state_ = State::data;
        continue;
      }
      case State::data: {
        const size_t at = find(b, delimiter_);
        if (at == std::string_view::npos) {
          // Keep what could be the start of a delimiter; hand over the rest.
          const size_t keep = std::min(buf_.size(), delimiter_.size() - 1);
          const size_t give = buf_.size() - keep;
          if (give > 0) {
            if (!on_data_(b.substr(0, give))) return fail("");
            buf_.erase(0, give);
          }
          return true;
        }
        if (at > 0 && !on_data_(b.substr(0, at))) return fail("");
        buf_.erase(0, at + delimiter_.size());
        state_ = State::after_delimiter;
        continue;
      }
      case State::done:
      case State::failed: return state_ == State::done;
    }
  }
}

}  // namespace execd::http
