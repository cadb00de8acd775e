#include "files/required_literal.hpp"

#include <cctype>
#include <optional>
#include <vector>

namespace execd::files {
namespace {

constexpr size_t kNone = static_cast<size_t>(-1);

/// Runs of literal characters that every match contains contiguously, read from the top
/// level of the pattern; nullopt when the pattern holds something that makes the analysis
/// unsafe.
class RunReader {
 public:
  explicit RunReader(std::string_view p) : p_(p) {}

  std::optional<std::vector<std::string>> read() {
    while (i_ < p_.size()) {
      const char c = p_[i_];
      if (c == '*' || c == '?' || c == '+' || c == '{') {
        if (!quantifier(c)) return std::nullopt;
        continue;
      }
      bool ok = true;
      switch (c) {
        case '\\': ok = escape(); break;
        case '[': {
          const size_t end = skip_class(i_);
          ok = end != kNone;
          if (ok) {
            i_ = end;
            other();
          }
          break;
        }
        case '(': ok = group(); break;
        case ')': case '|': return std::nullopt;  // unbalanced, or an alternative at the top
        case '.': case '^': case '$': ++i_; other(); break;
        default: literal_char(); break;
      }
      if (!ok) return std::nullopt;
    }
    end_run();
    return std::move(runs_);
  }

 private:
  // A repetition of the previous atom: an optional one leaves the run without it, a
  // required one ends the run after it (what follows is no longer adjacent).
  bool quantifier(char c) {
    bool optional = c != '+';
    if (c == '{') {
      size_t j = i_ + 1;
      size_t digits = 0;
      unsigned long min = 0;
      while (j < p_.size() && std::isdigit(static_cast<unsigned char>(p_[j])) && digits < 6) {
        min = min * 10 + static_cast<unsigned long>(p_[j] - '0');
        ++j;
        ++digits;
      }
      if (digits == 0) return false;  // a '{' RE2 takes literally: not worth the risk
      if (j < p_.size() && p_[j] == ',') {
        ++j;
        while (j < p_.size() && std::isdigit(static_cast<unsigned char>(p_[j]))) ++j;
      }
      if (j >= p_.size() || p_[j] != '}') return false;
      optional = min == 0;
      i_ = j + 1;
    } else {
      ++i_;
    }
    if (i_ < p_.size() && p_[i_] == '?') ++i_;  // non-greedy
    if (last_atom_ != kNone) {
      if (optional) run_.resize(last_atom_);
      end_run();
    }
    return true;
  }

  bool escape() {
    if (i_ + 1 >= p_.size()) return false;
    const char d = p_[i_ + 1];
    const auto ud = static_cast<unsigned char>(d);
    if (ud < 0x80 && std::ispunct(ud)) {  // an escaped metacharacter stands for itself
      last_atom_ = run_.size();
      run_ += d;
      i_ += 2;
      return true;
    }
    if (d == 'x' || d == 'p' || d == 'P') {
      if (i_ + 2 < p_.size() && p_[i_ + 2] == '{') {
        const size_t close = p_.find('}', i_ + 3);
        if (close == std::string_view::npos) return false;
        i_ = close + 1;
      } else {
        i_ += d == 'x' ? 4 : 3;  // \x41, \pL
      }
    } else if (d >= '0' && d <= '7') {
      i_ += 2;
      for (int n = 0; n < 2 && i_ < p_.size() && p_[i_] >= '0' && p_[i_] <= '7'; ++n) ++i_;
    } else if (std::isalpha(ud) && d != 'Q' && d != 'E' && d != 'C') {
      i_ += 2;  // \d \w \s \b \n \t ...: a class or an assertion
    } else {
      return false;
    }
    other();
    return true;
  }

  /// The index after the class opening at `at`, or kNone.
  size_t skip_class(size_t at) const {
    size_t j = at + 1;
    if (j < p_.size() && p_[j] == '^') ++j;
    if (j < p_.size() && p_[j] == ']') ++j;
    while (j < p_.size()) {
      if (p_[j] == '\\') {
        j += 2;
      } else if (p_[j] == '[' && j + 1 < p_.size() && p_[j + 1] == ':') {
        const size_t close = p_.find(":]", j + 2);
        if (close == std::string_view::npos) return kNone;
        j = close + 2;
      } else if (p_[j] == ']') {
        return j + 1;
      } else {
        ++j;
      }
    }
    return kNone;
  }

  // A group is skipped whole; inline flags (`(?i)`, `(?s:`) change how literals match: none.
  bool group() {
    if (i_ + 1 < p_.size() && p_[i_ + 1] == '?') {
      const bool plain = i_ + 2 < p_.size() && (p_[i_ + 2] == ':' || (p_[i_ + 2] == 'P' && i_ + 3 < p_.size() && p_[i_ + 3] == '<'));
      if (!plain) return false;
    }
    int depth = 0;
    size_t j = i_;
    while (j < p_.size()) {
      const char c = p_[j];
      if (c == '\\') {
        if (j + 1 < p_.size() && p_[j + 1] == 'Q') return false;
        j += 2;
        continue;
      }
      if (c == '[') {
        j = skip_class(j);
        if (j == kNone) return false;
        continue;
      }
      if (c == '(') {
        if (j + 1 < p_.size() && p_[j + 1] == '?' && !(j + 2 < p_.size() && (p_[j + 2] == ':' || p_[j + 2] == 'P'))) return false;
        ++depth;
      } else if (c == ')' && --depth == 0) {
        i_ = j + 1;
        other();
        return true;
      }
      ++j;
    }
    return false;
  }

  void literal_char() {
    last_atom_ = run_.size();
    // A UTF-8 character is one atom: a quantifier after it applies to all its bytes.
    do run_ += p_[i_++];
    while (i_ < p_.size() && (static_cast<unsigned char>(p_[i_]) & 0xC0) == 0x80);
  }

  // Anything but a literal character (a class, a group, an assertion) ends the run.
  void other() { end_run(); }

  void end_run() {
    if (!run_.empty()) runs_.push_back(run_);
    run_.clear();
    last_atom_ = kNone;
  }

  std::string_view p_;
  size_t i_ = 0;
  std::string run_;
  size_t last_atom_ = kNone;  // where the last literal atom starts in run_, kNone after anything else
  std::vector<std::string> runs_;
};

}  // namespace

std::string foldable_piece(std::string_view literal, bool ignore_case) {
  if (!ignore_case) return std::string(literal);
  std::string_view best;
  size_t start = 0;
  for (size_t i = 0; i <= literal.size(); ++i) {
    const bool breaks = i == literal.size() || static_cast<unsigned char>(literal[i]) >= 0x80 ||
                        literal[i] == 'k' || literal[i] == 'K' || literal[i] == 's' || literal[i] == 'S';
    if (!breaks) continue;
    if (i - start > best.size()) best = literal.substr(start, i - start);
    start = i + 1;
  }
  return std::string(best);
}

std::string required_literal(std::string_view pattern, bool ignore_case) {
  auto runs = RunReader(pattern).read();
  if (!runs) return {};
  std::string best;
  for (const auto& r : *runs) {
    auto piece = foldable_piece(r, ignore_case);
    if (piece.size() > best.size()) best = std::move(piece);
  }
  return best;
}

}  // namespace execd::files
