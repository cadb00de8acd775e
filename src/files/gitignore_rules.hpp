#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace execd::files {

/// The patterns of one `.gitignore` file, matched the way git does: blank lines and `#`
/// comments skipped, `!` negates, a trailing `/` matches directories only, a pattern with
/// a `/` before its end is anchored to the file's directory, other patterns match a base
/// name at any depth; `*` and `?` stop at `/`, `**` spans directories, `[...]` sets.
/// Matching is a dynamic programme over (pattern, path), so no pattern backtracks
/// exponentially. Immutable after parse; any thread.
class GitignoreRules {
 public:
  /// `text`: the file's contents.
  static GitignoreRules parse(std::string_view text);

  enum class Verdict { none, ignore, keep };
  /// The last rule that matches `rel` (a path relative to the .gitignore's directory,
  /// no leading `/`) decides; `none` when no rule does.
  [[nodiscard]] Verdict match(std::string_view rel, bool is_dir) const;
  [[nodiscard]] bool empty() const { return rules_.empty(); }

 private:
  struct Rule {
    std::string pattern;
    bool negated = false;
    bool dir_only = false;
    bool anchored = false;
  };
  std::vector<Rule> rules_;
};

/// Glob match with gitignore's rules for `*`, `?`, `**` and `[...]` (exposed for tests).
bool gitignore_glob(std::string_view pattern, std::string_view path);

}  // namespace execd::files
