#include "core/json_parse.hpp"

namespace execd::core {

bool json_depth_within(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

Result<nlohmann::json> parse_json(std::string_view text, size_t max_depth) {
  if (!json_depth_within(text, max_depth)) {
    return make_error(Errc::invalid_argument,
                      "JSON nests deeper than " + std::to_string(max_depth) + " levels of arrays and objects");
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return make_error(Errc::invalid_argument, std::string("not valid JSON: ") + e.what());
  }
}

}  // namespace execd::core
