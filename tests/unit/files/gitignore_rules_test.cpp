#include <doctest/doctest.h>

#include "files/gitignore_rules.hpp"

using execd::files::gitignore_glob;
using execd::files::GitignoreRules;
using V = GitignoreRules::Verdict;

TEST_CASE("gitignore globs: * and ? stop at /, ** spans directories, sets") {
  CHECK(gitignore_glob("*.log", "a.log"));
  CHECK_FALSE(gitignore_glob("*.log", "d/a.log"));
  CHECK(gitignore_glob("**/a.log", "a.log"));
  CHECK(gitignore_glob("**/a.log", "x/y/a.log"));
  CHECK_FALSE(gitignore_glob("**/a.log", "xa.log"));
  CHECK(gitignore_glob("a/**", "a/b/c"));
  CHECK(gitignore_glob("a/**/b", "a/b"));
  CHECK(gitignore_glob("a/**/b", "a/x/y/b"));
  CHECK(gitignore_glob("f?.[0-9]", "f1.7"));
  CHECK_FALSE(gitignore_glob("f?.[!0-9]", "f1.7"));
  // Many stars cost a DP over (pattern, path), never exponential backtracking.
  CHECK_FALSE(gitignore_glob("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", std::string(2000, 'a')));
}

TEST_CASE("gitignore rules: anchoring, directories only, negation, comments") {
  auto r = GitignoreRules::parse("# comment\n\n*.log\n!keep.log\n/root_only.txt\nbuild/\ndocs/*.md\n  \n");
  CHECK(r.match("a.log", false) == V::ignore);
  CHECK(r.match("deep/dir/a.log", false) == V::ignore);
  CHECK(r.match("keep.log", false) == V::keep);
  CHECK(r.match("root_only.txt", false) == V::ignore);
  CHECK(r.match("sub/root_only.txt", false) == V::none);
  CHECK(r.match("build", true) == V::ignore);
  CHECK(r.match("build", false) == V::none);
  CHECK(r.match("x/build", true) == V::ignore);
  CHECK(r.match("docs/a.md", false) == V::ignore);
  CHECK(r.match("docs/sub/a.md", false) == V::none);
  CHECK(r.match("main.c", false) == V::none);
}
