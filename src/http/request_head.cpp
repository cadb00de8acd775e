#include "http/request_head.hpp"

#include <array>
#include <charconv>

namespace execd::http {
namespace {

// RFC 9110 5.6.2 tchar.
constexpr std::array<bool, 256> make_token_table() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto kToken = make_token_table();

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!kToken[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Printable for a message: at most 40 bytes, control bytes as '?'.
std::string shown(std::string_view s) {
  std::string out(s.substr(0, 40));
  for (auto& c : out) {
    if (is_ctl(static_cast<unsigned char>(c)) || static_cast<unsigned char>(c) >= 0x80) c = '?';
  }
  if (s.size() > 40) out += "...";
  return out;
}

HeadCheck refuse(int status, std::string message) {
  HeadCheck c;
  c.status = status;
  c.message = std::move(message);
  return c;
}

bool check_request_line(std::string_view line, const HeadLimits& limits, HeadInfo& info, HeadCheck& bad) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    bad = refuse(400, "malformed request line '" + shown(line) + "': expected METHOD TARGET HTTP/1.1");
    return false;
  }
  const auto method = line.substr(0, sp1);
  const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto version = line.substr(sp2 + 1);
  if (!is_token(method)) {
    bad = refuse(400, "malformed request method '" + shown(method) + "'");
    return false;
  }
  if (target.size() > limits.max_target_bytes) {
    bad = refuse(414, "request target is " + std::to_string(target.size()) + " bytes; at most " +
                          std::to_string(limits.max_target_bytes) + " are accepted");
    return false;
  }
  if (target.empty()) {
    bad = refuse(400, "request target is empty");
    return false;
  }
  for (char c : target) {
    if (is_ctl(static_cast<unsigned char>(c))) {
      bad = refuse(400, "request target holds a control byte");
      return false;
    }
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    bad = refuse(400, "unsupported HTTP version '" + shown(version) + "' (HTTP/1.0 or HTTP/1.1)");
    return false;
  }
  info.method = method;
  return true;
}

}  // namespace

std::optional<size_t> find_head_end(std::string_view bytes) {
  const size_t pos = bytes.find("\r\n\r\n");
  if (pos == std::string_view::npos) return std::nullopt;
  return pos + 4;
}

HeadCheck check_request_head(std::string_view head, const HeadLimits& limits) {
  if (auto end = find_head_end(head)) head = head.substr(0, *end);
  if (head.size() > limits.max_head_bytes) {
    return refuse(431, "request line and headers exceed " + std::to_string(limits.max_head_bytes) + " bytes");
  }
  HeadInfo info;
  info.head_bytes = head.size();
  HeadCheck bad;
  bool seen_transfer_encoding = false;
  size_t start = 0;
  bool first = true;
  while (start < head.size()) {
    const size_t lf = head.find('\n', start);
    if (lf == std::string_view::npos) {
      // Cut before its blank line: the complete lines were checked; a request line must end.
      if (first) return refuse(400, "the request line does not end in CRLF");
      break;
    }
    if (lf == start || head[lf - 1] != '\r') return refuse(400, "a line of the request head ends in a bare LF");
    const auto line = head.substr(start, lf - 1 - start);
    start = lf + 1;
    if (line.find('\r') != std::string_view::npos) return refuse(400, "the request head holds a bare CR");
    if (line.find('\0') != std::string_view::npos) return refuse(400, "the request head holds a NUL byte");
    if (first) {
      first = false;
      if (line.empty()) return refuse(400, "the request begins with an empty line");
      if (!check_request_line(line, limits, info, bad)) return bad;
      continue;
    }
    if (line.empty()) break;  // the blank line: the head ends
    if (line.front() == ' ' || line.front() == '\t') {
      return refuse(400, "folded header line (obsolete line folding is not accepted)");
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return refuse(400, "header line without a colon: '" + shown(line) + "'");
    const auto name = line.substr(0, colon);
    if (!is_token(name)) return refuse(400, "malformed header name '" + shown(name) + "'");
    const auto value = trim(line.substr(colon + 1));
    for (char c : value) {
      if (c != '\t' && is_ctl(static_cast<unsigned char>(c))) {
        return refuse(400, "header " + std::string(name) + " holds a control byte");
      }
    }
    if (++info.header_count > limits.max_header_count) {
      return refuse(431, "more than " + std::to_string(limits.max_header_count) + " request headers");
    }
    if (iequals(name, "Content-Length")) {
      uint64_t n = 0;
      const auto* b = value.data();
      const auto* e = value.data() + value.size();
      const auto r = std::from_chars(b, e, n);
      if (value.empty() || value.size() > 19 || value.front() < '0' || value.front() > '9' || r.ec != std::errc() ||
          r.ptr != e) {
        return refuse(400, "malformed Content-Length '" + shown(value) + "'");
      }
      if (info.content_length && *info.content_length != n) {
        return refuse(400, "two Content-Length headers that differ");
      }
      info.content_length = n;
    } else if (iequals(name, "Transfer-Encoding")) {
      if (seen_transfer_encoding) return refuse(400, "more than one Transfer-Encoding header");
      seen_transfer_encoding = true;
      if (!iequals(value, "chunked")) {
        return refuse(501, "Transfer-Encoding '" + shown(value) + "' is not supported (only chunked)");
      }
      info.is_chunked = true;
    } else if (iequals(name, "Range") && value.size() > limits.max_range_bytes) {
      return refuse(416, "Range header is " + std::to_string(value.size()) + " bytes; at most " +
                             std::to_string(limits.max_range_bytes) + " are accepted");
    }
  }
  if (first) return refuse(400, "the request head is empty");
  if (seen_transfer_encoding && info.content_length) {
    return refuse(400, "Content-Length and Transfer-Encoding together");
  }
  HeadCheck ok;
  ok.info = info;
  return ok;
}

}  // namespace execd::http
