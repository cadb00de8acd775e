#include "files/file_grep.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace execd::files {
namespace {

constexpr size_t kChunk = 1 << 20;     // one read; most files fit in one
constexpr size_t kFirstBlock = 64 << 10;  // read first, where a NUL makes the file binary
constexpr size_t kMaxLine = 16 << 20;  // a longer "line" is searched in pieces

}  // namespace

FileGrepOutcome FileGrep::search(int fd, const std::string& abs, const Sink& sink) {
  FileGrepOutcome out;
  if (!control_.keep_going()) {
    out.stopped = true;
    return out;
  }
  size_t len = 0;
  size_t scan = 0;
  size_t counted_off = 0;
  uint64_t counted_line = 1;
  bool first = true;
  bool eof = false;
  for (;;) {
    if (!eof) {
      if (cap_ < len + kChunk) grow(len + kChunk, len);
      const uint64_t file_left = q_.max_bytes_per_file - out.bytes;
      // The first block alone first: a binary file costs no more than that.
      const uint64_t room = first ? std::min(kFirstBlock, cap_ - len) : cap_ - len;
      const uint64_t want = file_left == 0 ? 0 : budget_.take(std::min<uint64_t>(room, file_left));
      if (want == 0) {
        // Cut only if there is more to read (nothing more is read from it either way).
        char probe;
        if (::read(fd, &probe, 1) == 1) {
          if (file_left == 0) {
            out.cut_per_file = true;
          } else {
            out.out_of_budget = true;
          }
        }
        eof = true;
      } else {
        ssize_t n;
        do n = ::read(fd, buf_.get() + len, want); while (n < 0 && errno == EINTR);
        if (n < 0) n = 0;  // unreadable: searched as far as it could be read
        // A short read of a regular file is its end.
        if (static_cast<uint64_t>(n) < want) {
          eof = true;
          budget_.give_back(want - static_cast<uint64_t>(n));
        }
        len += static_cast<size_t>(n);
        out.bytes += static_cast<uint64_t>(n);
        if (first) {
          first = false;
          if (std::memchr(buf_.get(), 0, len) != nullptr) {
            out.binary = true;
            return out;
          }
        }
      }
    }
    size_t limit = len;
    if (!eof) {
      const void* nl = len > scan ? ::memrchr(buf_.get() + scan, '\n', len - scan) : nullptr;
      if (nl == nullptr && len - scan < kMaxLine) continue;  // a line longer than the buffer: read on
      if (nl != nullptr) limit = static_cast<size_t>(static_cast<const char*>(nl) - buf_.get()) + 1;
    }
    bool deferred = false;
    size_t pos = scan;
    size_t ms = 0;
    size_t me = 0;
    while (pos < limit && m_.find(buf_.get(), len, pos, limit, ms, me)) {
      const char* b = buf_.get();
      const void* before_nl = ms > pos ? ::memrchr(b + pos, '\n', ms - pos) : nullptr;
      const size_t line_start = before_nl ? static_cast<size_t>(static_cast<const char*>(before_nl) - b) + 1 : pos;
      const void* after_nl = ::memchr(b + ms, '\n', limit - ms);
      const size_t line_end = after_nl ? static_cast<size_t>(static_cast<const char*>(after_nl) - b) : limit;
      if (q_.context > 0 && !eof && !has_lines_after(line_end, len, q_.context)) {
        scan = line_start;  // its after-context is not read yet
        deferred = true;
        break;
      }
      counted_line += static_cast<uint64_t>(std::count(b + counted_off, b + line_start, '\n'));
      counted_off = line_start;
      if (!sink(make_match(abs, counted_line, line_start, line_end, ms, len))) {
        out.stopped = true;
        return out;
      }
      pos = line_end + 1;
    }
    if (!deferred) scan = limit;
    if (eof && !deferred) return out;
    if (!control_.keep_going()) {
      out.stopped = true;
      return out;
    }
    // Keep the context lines before `scan`; drop the rest of what was searched.
    size_t keep = scan;
    for (int c = 0; c < q_.context && keep > 1; ++c) {
      const void* p = ::memrchr(buf_.get(), '\n', keep - 1);
      keep = p ? static_cast<size_t>(static_cast<const char*>(p) - buf_.get()) + 1 : 0;
    }
    if (keep > 0) {
      if (counted_off < keep) {
        counted_line += static_cast<uint64_t>(std::count(buf_.get() + counted_off, buf_.get() + keep, '\n'));
        counted_off = keep;
      }
      std::memmove(buf_.get(), buf_.get() + keep, len - keep);
      len -= keep;
      scan -= keep;
      counted_off -= keep;
    }
  }
}

void FileGrep::grow(size_t need, size_t used) {
  const size_t n = std::max(cap_ * 2, need);
  auto nb = std::make_unique_for_overwrite<char[]>(n);
  if (used > 0) std::memcpy(nb.get(), buf_.get(), used);
  buf_ = std::move(nb);
  cap_ = n;
}

bool FileGrep::has_lines_after(size_t line_end, size_t len, int n) const {
  size_t p = line_end;
  for (int i = 0; i < n; ++i) {
    if (p >= len) return false;
    const void* nl = ::memchr(buf_.get() + p + 1, '\n', len - p - 1);
    if (nl == nullptr) return false;
    p = static_cast<size_t>(static_cast<const char*>(nl) - buf_.get());
  }
  return true;
}

std::string FileGrep::line_text(size_t start, size_t end, size_t around, bool& cut_flag) const {
  if (end > start && buf_[end - 1] == '\r') --end;
  if (end - start <= GrepMatch::kMaxLineBytes) return std::string(buf_.get() + start, end - start);
  cut_flag = true;
  const size_t from = around > start + GrepMatch::kMaxLineBytes / 4 ? around - GrepMatch::kMaxLineBytes / 4 : start;
  return std::string(buf_.get() + from, std::min(end - from, GrepMatch::kMaxLineBytes));
}

GrepMatch FileGrep::make_match(const std::string& abs, uint64_t line, size_t line_start, size_t line_end, size_t ms,
                               size_t len) const {
  GrepMatch m;
  m.path = abs;
  m.line = line;
  m.column = ms - line_start + 1;
  m.text = line_text(line_start, line_end, ms, m.text_cut);
  if (q_.context > 0) {
    bool ignored = false;
    size_t s = line_start;
    for (int c = 0; c < q_.context && s > 0; ++c) {
      const size_t e = s - 1;  // the '\n' ending the line before
      const void* p = e > 0 ? ::memrchr(buf_.get(), '\n', e) : nullptr;
      s = p ? static_cast<size_t>(static_cast<const char*>(p) - buf_.get()) + 1 : 0;
      m.before.insert(m.before.begin(), line_text(s, e, s, ignored));
    }
    size_t e = line_end;
    for (int c = 0; c < q_.context && e < len; ++c) {
      const size_t st = e + 1;
      if (st >= len) break;
      const void* p = ::memchr(buf_.get() + st, '\n', len - st);
      e = p ? static_cast<size_t>(static_cast<const char*>(p) - buf_.get()) : len;
      m.after.push_back(line_text(st, e, st, ignored));
    }
  }
  return m;
}

}  // namespace execd::files
