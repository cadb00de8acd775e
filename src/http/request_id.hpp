#pragma once

#include <string>
#include <string_view>

namespace execd::http {

/// The header that carries a request's id, as OpenSandbox's server names it.
inline constexpr const char* kRequestIdHeader = "X-Request-ID";
inline constexpr size_t kMaxRequestIdBytes = 128;

/// `incoming` when it is a usable id (1 to 128 printable ASCII characters, no spaces at
/// either end), otherwise a fresh one (a UUIDv4), so a hostile id can neither forge log
/// lines nor grow without bound.
std::string accept_request_id(std::string_view incoming);

}  // namespace execd::http
