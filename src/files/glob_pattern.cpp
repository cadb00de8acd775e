#include "files/glob_pattern.hpp"

#include <memory>
#include <utility>

namespace execd::files {

namespace {

struct Item {
  enum Kind : uint8_t { literal, question, star, globstar_prefix, globstar_all, set, alt } kind = literal;
  uint8_t byte = 0;
  bool negated = false;
  uint32_t set_index = 0;
  std::vector<std::vector<Item>> alternatives;
};

using Sequence = std::vector<Item>;

bool is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

}  // namespace

/// Parses a pattern into items, then builds the NFA from the last item backwards, so
/// each state is created with its successor already known.
class GlobCompiler {
 public:
  GlobCompiler(std::string_view p, GlobPattern& g) : p_(p), g_(g) {}

  core::Result<void> run() {
    find_pairs();
    auto seq = parse(0, p_.size(), 0);
    if (!seq) return seq.error();
    g_.states_.push_back(GlobPattern::State{});  // state 0: match
    g_.start_ = build(*seq, 0);
    return {};
  }

 private:
  using State = GlobPattern::State;

  // Index of the ']' closing the set opened at `i`, or npos (then '[' is a literal).
  size_t set_end(size_t i) const {
    size_t j = i + 1;
    if (j < p_.size() && (p_[j] == '!' || p_[j] == '^')) ++j;
    if (j < p_.size() && p_[j] == ']') ++j;  // a leading ']' is a member
    for (; j < p_.size(); ++j) {
      if (p_[j] == '\\') {
        ++j;
      } else if (p_[j] == ']') {
        return j;
      }
    }
    return std::string_view::npos;
  }

  // One linear pass pairs every '{' with its '}' (sets and escapes skipped), so an
  // unclosed brace is known to be a literal without trying to parse it.
  void find_pairs() {
    close_of_.assign(p_.size(), std::string_view::npos);
    set_end_.assign(p_.size(), std::string_view::npos);
    std::vector<size_t> open;
    for (size_t i = 0; i < p_.size(); ++i) {
      const char c = p_[i];
      if (c == '\\') {
        ++i;
      } else if (c == '[') {
        set_end_[i] = set_end(i);
        if (set_end_[i] != std::string_view::npos) i = set_end_[i];
      } else if (c == '{') {
        open.push_back(i);
      } else if (c == '}' && !open.empty()) {
        close_of_[open.back()] = i;
        open.pop_back();
      }
    }
  }

  core::Result<Sequence> parse(size_t begin, size_t end, size_t depth) {
    Sequence seq;
    size_t i = begin;
    while (i < end) {
      const char c = p_[i];
      Item item;
      if (c == '\\' && i + 1 < end) {
        item.byte = static_cast<uint8_t>(p_[i + 1]);
        i += 2;
      } else if (c == '[' && set_end_[i] != std::string_view::npos && set_end_[i] < end) {
        item = parse_set(i, set_end_[i]);
        i = set_end_[i] + 1;
      } else if (c == '*') {
        size_t j = i;
        while (j < end && p_[j] == '*') ++j;
        const bool whole_component = j - i >= 2 && (i == begin || p_[i - 1] == '/') && (j == end || p_[j] == '/');
        if (whole_component && j < end) {
          item.kind = Item::globstar_prefix;
          i = j + 1;  // the '/' belongs to it
        } else {
          item.kind = whole_component ? Item::globstar_all : Item::star;
          i = j;
        }
      } else if (c == '?') {
        item.kind = Item::question;
        ++i;
      } else if (c == '{' && close_of_[i] != std::string_view::npos && close_of_[i] < end) {
        if (depth + 1 > GlobPattern::kMaxBraceDepth) {
          return core::make_error(core::Errc::invalid_argument, "pattern nests braces deeper than " +
                                                                    std::to_string(GlobPattern::kMaxBraceDepth) + " levels");
        }
        const size_t close = close_of_[i];
        item.kind = Item::alt;
        size_t from = i + 1;
        for (size_t k = i + 1; k <= close; ++k) {
          const char d = p_[k];
          if (d == '\\') {
            ++k;
          } else if (d == '[' && set_end_[k] != std::string_view::npos) {
            k = set_end_[k];
          } else if (d == '{' && close_of_[k] != std::string_view::npos) {
            k = close_of_[k];
          } else if (d == ',' || k == close) {
            auto alt = parse(from, k, depth + 1);
            if (!alt) return alt.error();
            item.alternatives.push_back(std::move(*alt));
            from = k + 1;
          }
        }
        i = close + 1;
      } else {
        item.byte = static_cast<uint8_t>(c);
        ++i;
      }
      // Runs of stars collapse: `a***b` is `a*b` (fewer states, same language).
      if (item.kind == Item::star && !seq.empty() && seq.back().kind == Item::star) continue;
      seq.push_back(std::move(item));
    }
    return seq;
  }

  Item parse_set(size_t open, size_t close) {
    Item item;
    item.kind = Item::set;
    std::bitset<256> members;
    size_t j = open + 1;
    if (p_[j] == '!' || p_[j] == '^') {
      item.negated = true;
      ++j;
    }
    bool first = true;
    while (j < close) {
      auto take = [&]() {
        if (p_[j] == '\\' && j + 1 < close) ++j;
        return static_cast<uint8_t>(p_[j++]);
      };
      if (!first && p_[j] == ']') break;
      first = false;
      const uint8_t lo = take();
      if (j + 1 < close && p_[j] == '-') {
        ++j;
        const uint8_t hi = take();
        for (unsigned b = lo; b <= hi; ++b) members.set(b);  // reversed: empty
      } else {
        members.set(lo);
      }
    }
    item.set_index = static_cast<uint32_t>(g_.sets_.size());
    g_.sets_.push_back(members);
    return item;
  }

  uint32_t add(State s) {
    g_.states_.push_back(s);
    return static_cast<uint32_t>(g_.states_.size() - 1);
  }

  // A loop over `kind` in front of `next`: split(kind -> back to split, next).
  uint32_t loop(State::Kind kind, uint32_t next) {
    const uint32_t split = add(State{State::split, 0, false, 0, 0, next});
    g_.states_[split].out = add(State{kind, 0, false, 0, split, 0});
    return split;
  }

  uint32_t build(const Sequence& seq, uint32_t next) {
    for (auto it = seq.rbegin(); it != seq.rend(); ++it) next = build(*it, next);
    return next;
  }

  uint32_t build(const Item& item, uint32_t next) {
    switch (item.kind) {
      case Item::literal: return add(State{State::byte, item.byte, false, 0, next, 0});
      // One character: a first byte, then the continuation bytes of its UTF-8 sequence.
      case Item::question: return add(State{State::lead, 0, false, 0, loop(State::cont, next), 0});
      case Item::set: return add(State{State::set, 0, item.negated, item.set_index, loop(State::cont, next), 0});
      case Item::star: return loop(State::any_but_slash, next);
      case Item::globstar_all: return loop(State::any, next);
      case Item::globstar_prefix: {  // (.*/)?
        const uint32_t slash = add(State{State::byte, '/', false, 0, next, 0});
        return add(State{State::split, 0, false, 0, loop(State::any, slash), next});
      }
      case Item::alt: {
        uint32_t first = build(item.alternatives.back(), next);
        for (size_t k = item.alternatives.size() - 1; k-- > 0;) {
          const uint32_t s = build(item.alternatives[k], next);
          first = add(State{State::split, 0, false, 0, s, first});
        }
        return first;
      }
    }
    return next;
  }

  std::string_view p_;
  GlobPattern& g_;
  std::vector<size_t> close_of_;
  std::vector<size_t> set_end_;
};

core::Result<GlobPattern> GlobPattern::compile(std::string_view pattern) {
  if (pattern.size() > kMaxLength) {
    return core::make_error(core::Errc::invalid_argument, "pattern is " + std::to_string(pattern.size()) +
                                                              " bytes long; at most " + std::to_string(kMaxLength) +
                                                              " are allowed");
  }
  if (pattern.find('\0') != std::string_view::npos) {
    return core::make_error(core::Errc::invalid_argument, "pattern contains a NUL byte");
  }
  GlobPattern g;
  g.has_slash_ = pattern.find('/') != std::string_view::npos;
  if (auto r = GlobCompiler(pattern, g).run(); !r) return r.error();
  return g;
}

bool GlobPattern::matches(std::string_view name) const {
  // State-set simulation: each state enters a set at most once per byte (marks), so the
  // cost is bounded by states × bytes.
  std::vector<uint32_t> mark(states_.size(), 0);
  std::vector<uint32_t> current;
  std::vector<uint32_t> next;
  std::vector<uint32_t> stack;
  uint32_t generation = 1;
  auto enter = [&](std::vector<uint32_t>& set, uint32_t s0) {
    stack.push_back(s0);
    while (!stack.empty()) {
      const uint32_t s = stack.back();
      stack.pop_back();
      if (mark[s] == generation) continue;
      mark[s] = generation;
      const State& st = states_[s];
      if (st.kind == State::split) {
        stack.push_back(st.out2);
        stack.push_back(st.out);
      } else {
        set.push_back(s);
      }
    }
  };
  enter(current, start_);
  for (const char ch : name) {
    const auto b = static_cast<uint8_t>(ch);
    ++generation;
    next.clear();
    for (const uint32_t s : current) {
      const State& st = states_[s];
      bool ok = false;
      switch (st.kind) {
        case State::byte: ok = b == st.value; break;
        case State::any_but_slash: ok = b != '/'; break;
        case State::any: ok = true; break;
        case State::lead: ok = b != '/' && !is_cont(b); break;
        case State::cont: ok = is_cont(b); break;
        case State::set: ok = b != '/' && sets_[st.set_index].test(b) != st.negated; break;
        case State::split:
        case State::match: break;
      }
      if (ok) enter(next, st.out);
    }
    std::swap(current, next);
    if (current.empty()) return false;
  }
  for (const uint32_t s : current) {
    if (states_[s].kind == State::match) return true;
  }
  return false;
}

bool glob_match(std::string_view pattern, std::string_view name) {
  auto g = GlobPattern::compile(pattern);
  return g && g->matches(name);
}

}  // namespace execd::files
