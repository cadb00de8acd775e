#include "core/path_expand.hpp"

#include <cctype>
#include <cstdlib>

namespace execd::core {

Result<std::string> expand_vars(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 >= text.size()) {
      out += text[i];
      continue;
    }
    size_t start = i + 1;
    size_t end = start;
    std::string name;
    if (text[start] == '{') {
      end = text.find('}', start);
      if (end == std::string::npos) return make_error(Errc::invalid_argument, "unclosed ${ in '" + text + "'");
      name = text.substr(start + 1, end - start - 1);
      i = end;
    } else {
      while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) != 0 || text[end] == '_')) ++end;
      name = text.substr(start, end - start);
      if (name.empty()) {
        out += '$';
        continue;
      }
      i = end - 1;
    }
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return make_error(Errc::invalid_argument, "undefined variable $" + name + " in '" + text + "'");
    out += v;
  }
  return out;
}


Result<std::string> expand_path(const std::string& path) {
  std::string p = path;
  if (!p.empty() && p[0] == '~' && (p.size() == 1 || p[1] == '/')) {
    const char* home = std::getenv("HOME");
    p = std::string(home != nullptr ? home : "/") + p.substr(1);
  }
  return expand_vars(p);
}

}  // namespace execd::core
