#include "commands/line_splitter.hpp"

#include <algorithm>
#include <utility>

namespace execd::commands {

void LineSplitter::emit(std::vector<std::string>& out) {
  if (partial_.empty()) {
    if (keep_blank_) out.emplace_back("\n");
  } else {
    out.push_back(std::move(partial_));
  }
  partial_.clear();
}

std::vector<std::string> LineSplitter::feed(std::string_view chunk) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < chunk.size()) {
    const char c = chunk[i];
    if (c == '\n' || c == '\r') {
      // The '\n' of a "\r\n" was already accounted for at the '\r'.
      if (!(c == '\n' && after_cr_)) emit(out);
      after_cr_ = c == '\r';
      ++i;
      continue;
    }
    after_cr_ = false;
    // Copy the run of ordinary bytes up to the next terminator in one go.
    size_t end = chunk.find_first_of("\r\n", i);
    if (end == std::string_view::npos) end = chunk.size();
    while (i < end) {
      const size_t take = std::min(end - i, max_line_ - partial_.size());
      partial_.append(chunk.substr(i, take));
      i += take;
      if (partial_.size() >= max_line_) out.push_back(std::exchange(partial_, std::string()));
    }
  }
  return out;
}

std::vector<std::string> LineSplitter::finish() {
  std::vector<std::string> out;
  if (!partial_.empty()) out.push_back(std::move(partial_));
  partial_.clear();
  after_cr_ = false;
  return out;
}

}  // namespace execd::commands
