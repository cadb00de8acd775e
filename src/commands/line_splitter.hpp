#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace execd::commands {

/// Cuts a byte stream into lines the way clients of /command expect (compat-notes §3.2):
/// `\n` and `\r` both end a line, `\r\n` counts once (also when split across chunks),
/// terminators are stripped, and an empty line is reported as "\n" (so clients can tell
/// it from nothing). finish() hands back a last line that had no terminator.
class LineSplitter {
 public:
  /// `keep_blank` false drops empty lines instead (bash sessions do).
  /// A line longer than `max_line` bytes is delivered in pieces of that size, so output
  /// without newlines (`head -c 1G /dev/zero`) cannot grow memory.
  explicit LineSplitter(bool keep_blank = true, size_t max_line = kDefaultMaxLine)
      : keep_blank_(keep_blank), max_line_(max_line > 0 ? max_line : 1) {}
  static constexpr size_t kDefaultMaxLine = 1024 * 1024;

  /// Lines completed by `chunk`, in order.
  std::vector<std::string> feed(std::string_view chunk);
  /// The unterminated tail, if any (empty vector otherwise); resets the splitter.
  std::vector<std::string> finish();

 private:
  void emit(std::vector<std::string>& out);

  bool keep_blank_;
  size_t max_line_;
  std::string partial_;
  bool after_cr_ = false;  // last byte seen was '\r': a following '\n' belongs to it
};

}  // namespace execd::commands
