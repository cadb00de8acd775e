#include "gateway/resource_quantity.hpp"

#include <array>
#include <limits>
#include <utility>

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;
__extension__ using u128 = unsigned __int128;  // exact scaling without overflow checks per digit

constexpr uint64_t kMaxMillis = uint64_t{1} << 63;
constexpr size_t kMaxDigits = 30;  // a mantissa of 10^30 still leaves room in 128 bits for the scaling checks

core::Error bad(std::string_view field, std::string_view text, std::string_view why) {
  return make_error(Errc::invalid_argument, "resourceLimits." + std::string(field) + ": '" + std::string(text) +
                                                "' is not a valid quantity (" + std::string(why) + ")");
}

struct Suffix {
  std::string_view text;
  int base;      // 10 or 2
  int exponent;  // of the base
};

constexpr std::array<Suffix, 15> kSuffixes{{
    {"n", 10, -9}, {"u", 10, -6}, {"m", 10, -3}, {"k", 10, 3}, {"M", 10, 6}, {"G", 10, 9}, {"T", 10, 12},
    {"P", 10, 15}, {"E", 10, 18}, {"Ki", 2, 10}, {"Mi", 2, 20}, {"Gi", 2, 30}, {"Ti", 2, 40}, {"Pi", 2, 50},
    {"Ei", 2, 60},
}};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

core::Result<uint64_t> parse_quantity_millis(std::string_view field, std::string_view text) {
  if (text.empty()) return bad(field, text, "empty");
  size_t i = 0;
  if (text[0] == '-') return bad(field, text, "must not be negative");
  if (text[0] == '+') ++i;

  // Mantissa: digits, an optional point, digits; at least one digit in all.
  u128 mantissa = 0;
  int decimal_exp = 0;  // value = mantissa * 10^decimal_exp * (suffix)
  size_t digits = 0;
  bool seen_point = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.') {
      if (seen_point) return bad(field, text, "two decimal points");
      seen_point = true;
      continue;
    }
    if (!is_digit(c)) break;
    if (mantissa == 0 && c == '0') {
      if (seen_point) --decimal_exp;  // leading zeros of a fraction only move the point
      ++digits;
      continue;
    }
    if (++digits > kMaxDigits) return bad(field, text, "too many digits");
    mantissa = mantissa * 10 + static_cast<unsigned>(c - '0');
    if (seen_point) --decimal_exp;
  }
  if (digits == 0) return bad(field, text, "no digits");

  // Suffix: a decimal exponent (e3, E-2), or one of the SI / binary suffixes, or none.
  const std::string_view suffix = text.substr(i);
  int binary_exp = 0;
  if (!suffix.empty()) {
    const bool exponent_form =
        (suffix[0] == 'e' || suffix[0] == 'E') && suffix.size() > 1 &&
        (is_digit(suffix[1]) || ((suffix[1] == '+' || suffix[1] == '-') && suffix.size() > 2));
    if (exponent_form) {
      size_t j = 1;
      const bool negative = suffix[j] == '-';
      if (suffix[j] == '+' || suffix[j] == '-') ++j;
      int e = 0;
      for (; j < suffix.size(); ++j) {
        if (!is_digit(suffix[j])) return bad(field, text, "exponent is not a whole number");
        e = e * 10 + (suffix[j] - '0');
        if (e > 100) return bad(field, text, "exponent out of range");
      }
      decimal_exp += negative ? -e : e;
    } else {
      const Suffix* found = nullptr;
      for (const auto& s : kSuffixes) {
        if (s.text == suffix) found = &s;
      }
      if (found == nullptr) {
        return bad(field, text, "unknown suffix '" + std::string(suffix) + "'; use m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<N>");
      }
      (found->base == 10 ? decimal_exp : binary_exp) += found->exponent;
    }
  }

  // Thousandths, exactly: scale up first (checked), then divide rounding up as
  // Kubernetes does (a quantity is never rounded down to less than was asked).
  decimal_exp += 3;
  u128 value = mantissa;
  const u128 limit = kMaxMillis;
  auto scale_up = [&](u128 factor) -> bool {
    if (value != 0 && value > limit / factor) return false;
    value *= factor;
    return true;
  };
  for (int k = 0; k < binary_exp; ++k) {
    if (!scale_up(2)) return bad(field, text, "too large");
  }
  for (; decimal_exp > 0; --decimal_exp) {
    if (!scale_up(10)) return bad(field, text, "too large");
  }
  bool had_remainder = false;
  for (; decimal_exp < 0 && value != 0; ++decimal_exp) {
    had_remainder = had_remainder || value % 10 != 0;
    value /= 10;
  }
  if (had_remainder) ++value;
  if (value > limit) return bad(field, text, "too large");
  return static_cast<uint64_t>(value);
}

core::Result<ResourceLimits> parse_resource_limits(const std::map<std::string, std::string>& fields) {
  ResourceLimits limits;
  // A whole, positive number of units no larger than `max`.
  auto whole = [](const std::string& key, const std::string& text, uint64_t max) -> core::Result<uint64_t> {
    auto millis = parse_quantity_millis(key, text);
    if (!millis) return millis.error();
    if (*millis % 1000 != 0) return bad(key, text, "must be a whole number");
    const uint64_t n = *millis / 1000;
    if (n == 0) return bad(key, text, "must be greater than zero");
    if (n > max) return bad(key, text, "larger than " + std::to_string(max));
    return n;
  };
  for (const auto& [key, text] : fields) {
    if (key == "cpu") {
      auto millis = parse_quantity_millis(key, text);
      if (!millis) return millis.error();
      if (*millis == 0) return bad(key, text, "must be at least 1m");
      if (*millis > std::numeric_limits<uint32_t>::max()) return bad(key, text, "too many cores");
      limits.cpu_millis = static_cast<uint32_t>(*millis);
    } else if (key == "memory") {
      auto n = whole(key, text, uint64_t{1} << 50);
      if (!n) return n.error();
      limits.memory_bytes = *n;
    } else if (key == "disk" || key == "ephemeral-storage") {
      auto n = whole(key, text, uint64_t{1} << 53);
      if (!n) return n.error();
      limits.disk_bytes = *n;
    } else if (key == "pids") {
      auto n = whole(key, text, uint64_t{1} << 22);
      if (!n) return n.error();
      limits.max_pids = static_cast<uint32_t>(*n);
    } else {
      return make_error(Errc::invalid_argument, "resourceLimits." + key +
                                                    ": not a resource this gateway limits (use cpu, memory, pids, "
                                                    "disk or ephemeral-storage)");
    }
  }
  return limits;
}

std::map<std::string, std::string> format_resource_limits(const ResourceLimits& limits) {
  std::map<std::string, std::string> out;
  if (limits.cpu_millis != 0) out["cpu"] = std::to_string(limits.cpu_millis) + "m";
  if (limits.memory_bytes != 0) out["memory"] = std::to_string(limits.memory_bytes);
  if (limits.max_pids != 0) out["pids"] = std::to_string(limits.max_pids);
  if (limits.disk_bytes != 0) out["disk"] = std::to_string(limits.disk_bytes);
  return out;
}

}  // namespace execd::gateway
