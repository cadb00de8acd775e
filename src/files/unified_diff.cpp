#include "files/unified_diff.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace execd::files {
namespace {

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    const size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    lines.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return lines;
}

enum class Op : uint8_t { keep, del, add };

/// Myers' O((N+M)D) shortest edit script over a[ab, ae) and b[bb, be); false when the
/// distance exceeds max_d (the caller then falls back to one replaced block).
bool myers(const std::vector<std::string_view>& a, size_t ab, size_t ae, const std::vector<std::string_view>& b,
           size_t bb, size_t be, int max_d, std::vector<Op>& script) {
  const int n = static_cast<int>(ae - ab);
  const int m = static_cast<int>(be - bb);
  const int max = std::min(n + m, max_d);
  const int offset = max + 1;
  std::vector<int> v(2 * static_cast<size_t>(max) + 3, 0);
  std::vector<std::vector<int>> trace;
  int found_d = -1;
  for (int d = 0; d <= max && found_d < 0; ++d) {
    trace.push_back(v);
    for (int k = -d; k <= d; k += 2) {
      int x;
      if (k == -d || (k != d && v[offset + k - 1] < v[offset + k + 1])) {
        x = v[offset + k + 1];
      } else {
        x = v[offset + k - 1] + 1;
      }
      int y = x - k;
      while (x < n && y < m && a[ab + x] == b[bb + y]) ++x, ++y;
      v[offset + k] = x;
      if (x >= n && y >= m) {
        found_d = d;
        break;
      }
    }
  }
  if (found_d < 0) return false;
  // Walk the trace back from (n, m) to (0, 0).
  std::vector<Op> rev;
  int x = n;
  int y = m;
  for (int d = found_d; d > 0; --d) {
    const auto& pv = trace[static_cast<size_t>(d)];
    const int k = x - y;
    const bool down = k == -d || (k != d && pv[offset + k - 1] < pv[offset + k + 1]);
    const int prev_k = down ? k + 1 : k - 1;
    const int prev_x = pv[offset + prev_k];
    const int prev_y = prev_x - prev_k;
    while (x > prev_x && y > prev_y) rev.push_back(Op::keep), --x, --y;
    rev.push_back(down ? Op::add : Op::del);
    x = prev_x;
    y = prev_y;
  }
  while (x > 0 && y > 0) rev.push_back(Op::keep), --x, --y;
  script.insert(script.end(), rev.rbegin(), rev.rend());
  return true;
}

void append_line(std::string& out, char tag, std::string_view line) {
  out += tag;
  out.append(line);
  if (line.empty() || line.back() != '\n') out += "\n\\ No newline at end of file\n";
}

}  // namespace

std::string unified_diff(std::string_view path, std::string_view before, std::string_view after, int context,
                         int max_edit_distance) {
  if (before == after) return {};
  const auto a = split_lines(before);
  const auto b = split_lines(after);
  size_t prefix = 0;
  while (prefix < a.size() && prefix < b.size() && a[prefix] == b[prefix]) ++prefix;
  size_t suffix = 0;
  while (suffix < a.size() - prefix && suffix < b.size() - prefix &&
         a[a.size() - 1 - suffix] == b[b.size() - 1 - suffix]) {
    ++suffix;
  }
  std::vector<Op> script(prefix, Op::keep);
  if (!myers(a, prefix, a.size() - suffix, b, prefix, b.size() - suffix, max_edit_distance, script)) {
    script.insert(script.end(), a.size() - suffix - prefix, Op::del);
    script.insert(script.end(), b.size() - suffix - prefix, Op::add);
  }
  script.insert(script.end(), suffix, Op::keep);

  std::string out = "--- a/" + std::string(path) + "\n+++ b/" + std::string(path) + "\n";
  const size_t ctx = static_cast<size_t>(std::max(context, 0));
  size_t i = 0;
  size_t counted = 0;
  size_t ai = 0;
  size_t bi = 0;
  while (i < script.size()) {
    // Next change; a hunk runs from `ctx` keeps before it to `ctx` keeps after its last
    // change, merging changes separated by at most 2*ctx kept lines.
    while (i < script.size() && script[i] == Op::keep) ++i;
    if (i == script.size()) break;
    size_t start = i >= ctx ? i - ctx : 0;
    size_t end = i;
    while (end < script.size()) {
      size_t keeps = 0;
      size_t j = end;
      while (j < script.size() && script[j] != Op::keep) ++j;
      while (j + keeps < script.size() && script[j + keeps] == Op::keep) ++keeps;
      if (j + keeps == script.size() || keeps > 2 * ctx) {
        end = std::min(j + ctx, script.size());
        break;
      }
      end = j + keeps;
    }
    // Line numbers at `start`, counted on from the previous hunk.
    for (; counted < start; ++counted) {
      if (script[counted] != Op::add) ++ai;
      if (script[counted] != Op::del) ++bi;
    }
    size_t an = 0;
    size_t bn = 0;
    std::string body;
    size_t ax = ai;
    size_t bx = bi;
    for (size_t s = start; s < end; ++s) {
      switch (script[s]) {
        case Op::keep: append_line(body, ' ', a[ax++]); ++bx; ++an; ++bn; break;
        case Op::del: append_line(body, '-', a[ax++]); ++an; break;
        case Op::add: append_line(body, '+', b[bx++]); ++bn; break;
      }
    }
    // diff -u numbers an empty side by the line before it.
    out += "@@ -" + std::to_string(an ? ai + 1 : ai) + "," + std::to_string(an) + " +" +
           std::to_string(bn ? bi + 1 : bi) + "," + std::to_string(bn) + " @@\n";
    out += body;
    i = end;
  }
  return out;
}

}  // namespace execd::files
