#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace execd::api {

/// Typed reads of a JSON request body's fields. Each returns invalid_argument naming the
/// field and what was expected, so a client learns exactly what to fix; an absent (or
/// null) field is std::nullopt.
core::Result<nlohmann::json> require_object(const nlohmann::json& body);
core::Result<std::optional<std::string>> string_field(const nlohmann::json& body, const std::string& key);
core::Result<std::optional<bool>> bool_field(const nlohmann::json& body, const std::string& key);
/// An integer in [min, max].
core::Result<std::optional<int64_t>> int_field(const nlohmann::json& body, const std::string& key, int64_t min,
                                               int64_t max);
/// An object of string values.
core::Result<std::map<std::string, std::string>> string_map_field(const nlohmann::json& body, const std::string& key);

/// A query parameter that must be present and non-empty (missing_parameter otherwise).
core::Result<std::string> required_query(const httplib::Request& req, const std::string& name);

}  // namespace execd::api
