#include "core/keyed_text.hpp"

#include <charconv>

namespace execd::core {

std::optional<uint64_t> keyed_value(std::string_view text, std::string_view key) {
  for (size_t at = 0; at < text.size();) {
    const size_t eol = std::min(text.find('\n', at), text.size());
    std::string_view line = text.substr(at, eol - at);
    at = eol + 1;
    if (line.substr(0, key.size()) != key) continue;
    line.remove_prefix(key.size());
    if (line.empty() || (line[0] != ':' && line[0] != ' ' && line[0] != '\t')) continue;  // a longer key
    const size_t digits = line.find_first_of("0123456789");
    if (digits == std::string_view::npos) return std::nullopt;
    uint64_t v = 0;
    std::from_chars(line.data() + digits, line.data() + line.size(), v);
    return v;
  }
  return std::nullopt;
}

}  // namespace execd::core
