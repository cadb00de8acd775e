#include "http/error_mapping.hpp"

namespace execd::http {

HttpError map_error(core::Errc errc) {
  using core::Errc;
  switch (errc) {
    case Errc::invalid_argument: return {400, "INVALID_REQUEST_BODY"};
    case Errc::missing_parameter: return {400, "MISSING_QUERY"};
    case Errc::invalid_file: return {400, "INVALID_FILE"};
    case Errc::invalid_file_metadata: return {400, "INVALID_FILE_METADATA"};
    case Errc::invalid_file_content: return {400, "INVALID_FILE_CONTENT"};
    case Errc::unauthorized: return {401, "UNAUTHORIZED"};
    case Errc::permission_denied: return {403, "PERMISSION_DENIED"};
    case Errc::forbidden: return {403, "FORBIDDEN"};
    case Errc::not_found: return {404, "NOT_FOUND"};
    case Errc::file_not_found: return {404, "FILE_NOT_FOUND"};
    case Errc::context_not_found: return {404, "CONTEXT_NOT_FOUND"};
    case Errc::route_not_found: return {404, "NOT_FOUND"};
    case Errc::method_not_allowed: return {405, "METHOD_NOT_ALLOWED"};
    case Errc::conflict: return {409, "CONFLICT"};
    case Errc::too_large: return {413, "TOO_LARGE"};
    case Errc::range_not_satisfiable: return {416, "RANGE_NOT_SATISFIABLE"};
    case Errc::not_supported: return {501, "NOT_SUPPORTED"};
    case Errc::unavailable: return {503, "UNAVAILABLE"};
    case Errc::capacity: return {503, "CAPACITY"};
    case Errc::kernel_dead: return {500, "KERNEL_DEAD"};
    case Errc::bad_gateway: return {502, "BAD_GATEWAY"};
    case Errc::no_space: return {507, "INSUFFICIENT_STORAGE"};
    case Errc::internal: return {500, "RUNTIME_ERROR"};
  }
  return {500, "RUNTIME_ERROR"};
}

HttpError map_protocol_status(int status) {
  switch (status) {
    case 413: return map_error(core::Errc::too_large);
    case 414: return {414, "URI_TOO_LONG"};
    case 416: return map_error(core::Errc::range_not_satisfiable);
    case 431: return {431, "HEADERS_TOO_LARGE"};
    case 501: return map_error(core::Errc::not_supported);
    default: return {status, map_error(core::Errc::invalid_argument).code};
  }
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    default: return "Error";
  }
}

}  // namespace execd::http
