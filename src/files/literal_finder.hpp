#pragma once

#include <cstddef>
#include <string>

namespace execd::files {

/// Finds a fixed byte string in a buffer, optionally ignoring ASCII case. Two bytes of the
/// needle chosen as rare in text are compared 16 positions at a time (SSE2 on x86-64) and
/// only the positions where both agree are compared in full, which is several times faster
/// than glibc's memmem on text. Immutable after construction; any thread.
class LiteralFinder {
 public:
  static constexpr size_t npos = static_cast<size_t>(-1);

  /// `needle` must not be empty. With `ascii_fold`, A-Z and a-z compare equal to their
  /// other case; every other byte compares as itself.
  LiteralFinder(std::string needle, bool ascii_fold);

  /// The offset of the first occurrence in hay[0, n), or npos.
  size_t find(const char* hay, size_t n) const;

  size_t size() const { return needle_.size(); }

 private:
  bool equal_at(const char* p) const;

  std::string needle_;  // lower-cased when folding
  bool fold_;
  size_t off1_ = 0;  // offsets of the two anchor bytes in the needle (off1_ <= off2_)
  size_t off2_ = 0;
};

}  // namespace execd::files
