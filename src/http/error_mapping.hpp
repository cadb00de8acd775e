#pragma once

#include <string_view>

#include "core/result.hpp"

namespace execd::http {

/// The one table from a domain error kind to an HTTP status and the contract's error code
/// string (`INVALID_REQUEST_BODY`, `FILE_NOT_FOUND`, ...).
struct HttpError {
  int status;
  std::string_view code;
};

HttpError map_error(core::Errc errc);

/// For protocol errors answered before any route runs (a refused request head): the code
/// for `status` (400, 413, 414, 416, 431, 501; anything else reads as 400's code).
HttpError map_protocol_status(int status);
/// The reason phrase of the status line for `status` ("Bad Request", ...).
std::string_view reason_phrase(int status);

}  // namespace execd::http
