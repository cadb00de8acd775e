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

}  // namespace execd::http
