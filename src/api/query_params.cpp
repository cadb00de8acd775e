#include "api/query_params.hpp"

#include <charconv>

namespace execd::api {

core::Result<uint64_t> parse_uint_param(std::string_view name, std::string_view text, uint64_t min, uint64_t max) {
  auto bad = [&](const std::string& why) {
    std::string shown(text.substr(0, 40));
    if (text.size() > 40) shown += "...";
    return core::make_error(core::Errc::invalid_argument,
                            "query parameter '" + std::string(name) + "' " + why + ", got '" + shown + "'");
  };
  const std::string range = "an integer from " + std::to_string(min) +
                            (max == std::numeric_limits<uint64_t>::max() ? " up" : " to " + std::to_string(max));
  uint64_t v = 0;
  // from_chars alone would take a leading '-' for signed types only; digits are
  // checked first so "+5", " 5" and "-5" are refused alike.
  const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
  if (!digits) return bad("must be " + range);
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc::result_out_of_range) return bad("is too large (must be " + range + ")");
  if (ec != std::errc() || p != text.data() + text.size() || v < min || v > max) return bad("must be " + range);
  return v;
}

core::Result<std::optional<uint64_t>> uint_query(const httplib::Request& req, const std::string& name, uint64_t min,
                                                 uint64_t max) {
  const size_t count = req.get_param_value_count(name.c_str());
  if (count == 0) return std::optional<uint64_t>();
  if (count > 1) {
    return core::make_error(core::Errc::invalid_argument, "query parameter '" + name + "' is given " +
                                                              std::to_string(count) + " times; give it once");
  }
  auto v = parse_uint_param(name, req.get_param_value(name.c_str()), min, max);
  if (!v) return v.error();
  return std::optional<uint64_t>(*v);
}

}  // namespace execd::api
