#include "gateway/metadata_rules.hpp"

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;

constexpr std::string_view kReservedPrefix = "opensandbox.io/";

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, at most 63 characters.
bool is_label_name(std::string_view s) {
  if (s.empty() || s.size() > 63 || !is_alnum(s.front()) || !is_alnum(s.back())) return false;
  for (char c : s) {
    if (!is_alnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// RFC 1123 subdomain: dot-separated labels of [a-z0-9]([-a-z0-9]*[a-z0-9])?, 253 at most.
bool is_dns_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t dot = s.find('.', start);
    const std::string_view label = s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63) return false;
    for (char c : label) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    if (label.front() == '-' || label.back() == '-') return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

}  // namespace

core::Result<void> check_metadata_key(std::string_view key) {
  const std::string quoted = "metadata key '" + std::string(key) + "'";
  if (key.substr(0, kReservedPrefix.size()) == kReservedPrefix) {
    return make_error(Errc::invalid_argument, quoted + " uses the reserved prefix " + std::string(kReservedPrefix));
  }
  std::string_view name = key;
  if (const auto slash = key.find('/'); slash != std::string_view::npos) {
    if (!is_dns_subdomain(key.substr(0, slash))) {
      return make_error(Errc::invalid_argument,
                        quoted + ": the prefix before '/' must be a DNS subdomain (lowercase letters, digits, '-', "
                                 "'.'; at most 253 characters)");
    }
    name = key.substr(slash + 1);
  }
  if (!is_label_name(name)) {
    return make_error(Errc::invalid_argument,
                      quoted + ": the name must be 1-63 characters of letters, digits, '-', '_', '.', starting and "
                               "ending with a letter or digit");
  }
  return {};
}

core::Result<void> check_metadata_value(std::string_view key, std::string_view value) {
  if (value.empty() || is_label_name(value)) return {};
  return make_error(Errc::invalid_argument,
                    "metadata value '" + std::string(value) + "' of key '" + std::string(key) +
                        "': at most 63 characters of letters, digits, '-', '_', '.', starting and ending with a "
                        "letter or digit");
}

core::Result<void> check_metadata(const std::map<std::string, std::string>& metadata) {
  for (const auto& [k, v] : metadata) {
    if (auto r = check_metadata_key(k); !r) return r;
    if (auto r = check_metadata_value(k, v); !r) return r;
  }
  return {};
}

core::Result<void> apply_metadata_patch(std::map<std::string, std::string>& metadata,
                                        const std::map<std::string, std::optional<std::string>>& patch) {
  for (const auto& [k, v] : patch) {
    // A delete of a reserved key is refused too: the prefix is never the client's.
    if (auto r = check_metadata_key(k); !r) return r;
    if (v) {
      if (auto r = check_metadata_value(k, *v); !r) return r;
    }
  }
  for (const auto& [k, v] : patch) {
    if (v) {
      metadata[k] = *v;
    } else {
      metadata.erase(k);
    }
  }
  return {};
}

}  // namespace execd::gateway
