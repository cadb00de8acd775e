#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace execd::http {

/// Writes `{"code","message"}` with the status from error_mapping: the only way an error
/// reaches a client.
void write_error(httplib::Response& res, const core::Error& error);

/// Writes `body` as compact JSON (invalid UTF-8 repaired) with `status`.
void write_json(httplib::Response& res, const nlohmann::json& body, int status = 200);

/// The request body as JSON; invalid_argument naming the parse problem otherwise.
/// An empty body is an error unless `allow_empty`, when it reads as `{}`.
core::Result<nlohmann::json> parse_json_body(const httplib::Request& req, bool allow_empty = false);

}  // namespace execd::http
