#pragma once

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace execd::core {

/// One command-line flag of a program's configuration struct `C`: its name, the
/// environment variable it falls back to, the help line, and the setter that checks and
/// stores a value. execd (core::Config) and execd-gateway (gateway::GatewayConfig) each
/// keep one table of these; parse_flags and flags_help are the only loop over them.
template <typename C>
struct FlagOption {
  using Setter = std::function<Result<void>(C&, const std::string&)>;
  std::string flag;  ///< without the leading "--"
  std::string env;   ///< empty: no environment fallback
  std::string value_name;
  std::string help;
  Setter set;
};

/// `text` as a whole decimal number no larger than `max`; invalid_argument otherwise.
inline Result<uint64_t> parse_flag_uint(const std::string& text, uint64_t max) {
  uint64_t v = 0;
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end || v > max) {
    return make_error(Errc::invalid_argument, "not a whole number in range: '" + text + "'");
  }
  return v;
}

/// "1500ms", "3s", "2m", "1h", or a bare number of seconds.
inline Result<std::chrono::milliseconds> parse_duration(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) != 0)) ++i;
  if (i == 0) return make_error(Errc::invalid_argument, "not a duration: '" + text + "'");
  auto n = parse_flag_uint(text.substr(0, i), uint64_t{1} << 40);
  if (!n) return make_error(Errc::invalid_argument, "not a duration: '" + text + "'");
  const std::string unit = text.substr(i);
  uint64_t ms_per = 0;
  if (unit.empty() || unit == "s") ms_per = 1000;
  else if (unit == "ms") ms_per = 1;
  else if (unit == "m") ms_per = 60'000;
  else if (unit == "h") ms_per = 3'600'000;
  else return make_error(Errc::invalid_argument, "unknown duration unit in '" + text + "' (use ms, s, m, h)");
  return std::chrono::milliseconds(static_cast<int64_t>(*n * ms_per));
}

/// "1048576", "64k", "16MiB", "2G" (binary multiples).
inline Result<uint64_t> parse_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) != 0)) ++i;
  if (i == 0) return make_error(Errc::invalid_argument, "not a size: '" + text + "'");
  auto n = parse_flag_uint(text.substr(0, i), uint64_t{1} << 50);
  if (!n) return make_error(Errc::invalid_argument, "not a size: '" + text + "'");
  std::string unit = text.substr(i);
  for (auto& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  uint64_t mult = 0;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") mult = uint64_t{1} << 10;
  else if (unit == "m" || unit == "mb" || unit == "mib") mult = uint64_t{1} << 20;
  else if (unit == "g" || unit == "gb" || unit == "gib") mult = uint64_t{1} << 30;
  else if (unit == "t" || unit == "tb" || unit == "tib") mult = uint64_t{1} << 40;
  else return make_error(Errc::invalid_argument, "unknown size unit in '" + text + "' (use k, M, G, T)");
  return *n * mult;
}

// Setters shared by every table: a field of `C` given by member pointer, checked.

template <typename C>
typename FlagOption<C>::Setter flag_string(std::string C::*field) {
  return [field](C& c, const std::string& v) -> Result<void> {
    c.*field = v;
    return {};
  };
}

template <typename C, typename Dur>
typename FlagOption<C>::Setter flag_duration(Dur C::*field) {
  return [field](C& c, const std::string& v) -> Result<void> {
    auto d = parse_duration(v);
    if (!d) return d.error();
    c.*field = std::chrono::duration_cast<Dur>(*d);
    return {};
  };
}

/// A count in [min, max].
template <typename C, typename N>
typename FlagOption<C>::Setter flag_count(N C::*field, uint64_t min, uint64_t max) {
  return [field, min, max](C& c, const std::string& v) -> Result<void> {
    auto n = parse_flag_uint(v, max);
    if (!n || *n < min) {
      return make_error(Errc::invalid_argument,
                        "expected a number from " + std::to_string(min) + " to " + std::to_string(max) +
                            ", got '" + v + "'");
    }
    c.*field = static_cast<N>(*n);
    return {};
  };
}

/// A limit in [0, max] where 0 means none.
template <typename C>
typename FlagOption<C>::Setter flag_limit(uint64_t C::*field, uint64_t max) {
  return [field, max](C& c, const std::string& v) -> Result<void> {
    auto n = parse_flag_uint(v, max);
    if (!n) return make_error(Errc::invalid_argument, "expected 0 (no limit) to " + std::to_string(max) + ", got '" + v + "'");
    c.*field = *n;
    return {};
  };
}

template <typename C>
typename FlagOption<C>::Setter flag_bytes(uint64_t C::*field) {
  return [field](C& c, const std::string& v) -> Result<void> {
    auto n = parse_size(v);
    if (!n) return n.error();
    c.*field = *n;
    return {};
  };
}

/// A TCP port, 0..65535 (0: pick a free one).
template <typename C>
typename FlagOption<C>::Setter flag_port(int C::*field) {
  return [field](C& c, const std::string& v) -> Result<void> {
    auto n = parse_flag_uint(v, 65535);
    if (!n) return make_error(Errc::invalid_argument, "port must be 0..65535, got '" + v + "'");
    c.*field = static_cast<int>(*n);
    return {};
  };
}

/// One of spdlog's level names.
template <typename C>
typename FlagOption<C>::Setter flag_log_level(std::string C::*field) {
  return [field](C& c, const std::string& v) -> Result<void> {
    static const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    for (const char* l : kLevels) {
      if (v == l) {
        c.*field = v;
        return {};
      }
    }
    return make_error(Errc::invalid_argument, "unknown log level '" + v + "'");
  };
}

/// Fills a `C` from `env` first, then from `args` (so a flag beats its variable).
/// `--name value` and `--name=value` both work; `-h`/`--help` set `C::show_help`.
/// Errors are invalid_argument with one line naming the flag or variable at fault.
template <typename C>
Result<C> parse_flags(const std::vector<FlagOption<C>>& options, const std::vector<std::string>& args,
                      const std::map<std::string, std::string>& env) {
  C c;
  for (const auto& opt : options) {
    if (opt.env.empty()) continue;
    auto it = env.find(opt.env);
    if (it == env.end()) continue;
    if (auto r = opt.set(c, it->second); !r) {
      return make_error(Errc::invalid_argument, opt.env + ": " + r.error().message);
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      c.show_help = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) return make_error(Errc::invalid_argument, "unexpected argument '" + a + "'");
    std::string name = a.substr(2);
    std::string value;
    bool has_value = false;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const FlagOption<C>* opt = nullptr;
    for (const auto& o : options) {
      if (o.flag == name) opt = &o;
    }
    if (opt == nullptr) return make_error(Errc::invalid_argument, "unknown flag '--" + name + "' (see --help)");
    if (!has_value) {
      if (i + 1 >= args.size()) return make_error(Errc::invalid_argument, "flag '--" + name + "' needs a value");
      value = args[++i];
    }
    if (auto r = opt->set(c, value); !r) {
      return make_error(Errc::invalid_argument, "--" + name + ": " + r.error().message);
    }
  }
  return c;
}

/// The --help text: `intro` (usage line and a sentence), then every flag with its value
/// name, help and environment variable.
template <typename C>
std::string flags_help(const std::vector<FlagOption<C>>& options, const std::string& intro) {
  std::ostringstream out;
  out << intro << "\nflags (env fallback):\n";
  for (const auto& o : options) {
    std::string left = "  --" + o.flag + " " + o.value_name;
    if (left.size() < 34) left.resize(34, ' ');
    out << left << o.help;
    if (!o.env.empty()) out << " [" << o.env << "]";
    out << "\n";
  }
  out << "  -h, --help                      this text\n";
  return out.str();
}

}  // namespace execd::core
