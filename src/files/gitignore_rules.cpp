#include "files/gitignore_rules.hpp"

#include <cstdint>

namespace execd::files {
namespace {

/// One pattern element: a literal byte, `?`, `*` (no `/`), `**` (anything), or a set.
struct Element {
  enum Kind : uint8_t { byte, one, star, globstar, globstar_dir, set } kind = byte;
  char c = 0;
  std::string set_text;  // set: the bytes between the brackets, ranges kept as a-b
  bool negated = false;
};

std::vector<Element> compile(std::string_view p) {
  std::vector<Element> out;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      out.push_back({Element::byte, p[++i], {}, false});
    } else if (c == '*') {
      if (i + 1 < p.size() && p[i + 1] == '*') {
        // "**/" is zero or more whole directories; "**" elsewhere is anything.
        ++i;
        while (i + 1 < p.size() && p[i + 1] == '*') ++i;
        if (i + 1 < p.size() && p[i + 1] == '/') {
          ++i;
          out.push_back({Element::globstar_dir, 0, {}, false});
        } else {
          out.push_back({Element::globstar, 0, {}, false});
        }
      } else {
        out.push_back({Element::star, 0, {}, false});
      }
    } else if (c == '?') {
      out.push_back({Element::one, 0, {}, false});
    } else if (c == '[') {
      size_t j = i + 1;
      bool neg = false;
      if (j < p.size() && (p[j] == '!' || p[j] == '^')) neg = true, ++j;
      size_t k = j;
      if (k < p.size() && p[k] == ']') ++k;
      while (k < p.size() && p[k] != ']') ++k;
      if (k >= p.size()) {
        out.push_back({Element::byte, c, {}, false});
      } else {
        out.push_back({Element::set, 0, std::string(p.substr(j, k - j)), neg});
        i = k;
      }
    } else {
      out.push_back({Element::byte, c, {}, false});
    }
  }
  return out;
}

bool in_set(const Element& e, char c) {
  bool hit = false;
  const std::string& s = e.set_text;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i + 2 < s.size() && s[i + 1] == '-') {
      if (static_cast<unsigned char>(c) >= static_cast<unsigned char>(s[i]) &&
          static_cast<unsigned char>(c) <= static_cast<unsigned char>(s[i + 2])) {
        hit = true;
      }
      i += 2;
    } else if (s[i] == c) {
      hit = true;
    }
  }
  return hit != e.negated;
}

}  // namespace

bool gitignore_glob(std::string_view pattern, std::string_view path) {
  const auto el = compile(pattern);
  // can[i]: elements [0, i) match the path read so far and element i starts fresh;
  // inside[i]: a "**/" at i has consumed bytes (it may only end right after a '/').
  std::vector<char> can(el.size() + 1, 0);
  std::vector<char> inside(el.size() + 1, 0);
  std::vector<char> next(el.size() + 1, 0);
  std::vector<char> next_inside(el.size() + 1, 0);
  auto close_empty = [&](std::vector<char>& v) {
    // Stars and globstars may match nothing.
    for (size_t i = 0; i < el.size(); ++i) {
      const auto k = el[i].kind;
      if (v[i] && (k == Element::star || k == Element::globstar || k == Element::globstar_dir)) v[i + 1] = 1;
    }
  };
  can[0] = 1;
  close_empty(can);
  for (char c : path) {
    std::fill(next.begin(), next.end(), 0);
    std::fill(next_inside.begin(), next_inside.end(), 0);
    for (size_t i = 0; i < el.size(); ++i) {
      const Element& e = el[i];
      if (e.kind == Element::globstar_dir && (can[i] || inside[i])) {
        next_inside[i] = 1;
        if (c == '/') next[i + 1] = 1;
        continue;
      }
      if (!can[i]) continue;
      switch (e.kind) {
        case Element::byte: if (e.c == c) next[i + 1] = 1; break;
        case Element::one: if (c != '/') next[i + 1] = 1; break;
        case Element::set: if (c != '/' && in_set(e, c)) next[i + 1] = 1; break;
        case Element::star: if (c != '/') next[i] = 1; break;
        case Element::globstar: next[i] = 1; break;
        case Element::globstar_dir: break;
      }
    }
    close_empty(next);
    can.swap(next);
    inside.swap(next_inside);
  }
  return can[el.size()] != 0;
}

GitignoreRules GitignoreRules::parse(std::string_view text) {
  GitignoreRules r;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string line(text.substr(pos, nl - pos));
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // Trailing spaces are dropped unless escaped.
    while (!line.empty() && line.back() == ' ' && !(line.size() >= 2 && line[line.size() - 2] == '\\')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    Rule rule;
    if (line[0] == '!') {
      rule.negated = true;
      line.erase(0, 1);
    } else if (line[0] == '\\' && line.size() > 1 && (line[1] == '#' || line[1] == '!')) {
      line.erase(0, 1);
    }
    if (!line.empty() && line.back() == '/') {
      rule.dir_only = true;
      line.pop_back();
    }
    if (line.empty()) continue;
    rule.anchored = line.find('/') != std::string::npos;
    if (line[0] == '/') line.erase(0, 1);
    rule.pattern = std::move(line);
    r.rules_.push_back(std::move(rule));
    if (nl >= text.size()) break;
  }
  return r;
}

GitignoreRules::Verdict GitignoreRules::match(std::string_view rel, bool is_dir) const {
  const size_t slash = rel.rfind('/');
  const std::string_view base = slash == std::string_view::npos ? rel : rel.substr(slash + 1);
  for (auto it = rules_.rbegin(); it != rules_.rend(); ++it) {
    if (it->dir_only && !is_dir) continue;
    if (gitignore_glob(it->pattern, it->anchored ? rel : base)) return it->negated ? Verdict::keep : Verdict::ignore;
  }
  return Verdict::none;
}

}  // namespace execd::files
