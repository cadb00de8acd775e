#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace execd::gateway {

/// A metadata key as Kubernetes label keys are: an optional DNS-subdomain prefix (at most
/// 253 characters of lowercase letters, digits, '-' and '.') and '/', then a name of at
/// most 63 characters matching [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?. Keys under the
/// reserved `opensandbox.io/` prefix are refused. invalid_argument naming the key.
core::Result<void> check_metadata_key(std::string_view key);

/// A metadata value: empty, or at most 63 characters matching
/// [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?. invalid_argument naming key and value.
core::Result<void> check_metadata_value(std::string_view key, std::string_view value);

/// Every key and value of a create request's metadata, through the two checks above.
core::Result<void> check_metadata(const std::map<std::string, std::string>& metadata);

/// A JSON Merge Patch (RFC 7396) of a flat string map: a value replaces or adds its key,
/// nullopt (JSON null) deletes it (absent keys are fine), keys not named stay. Every
/// added key and value is checked first; on an error `metadata` is untouched.
core::Result<void> apply_metadata_patch(std::map<std::string, std::string>& metadata,
                                        const std::map<std::string, std::optional<std::string>>& patch);

}  // namespace execd::gateway
