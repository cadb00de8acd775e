#pragma once

#include <string>

#include <httplib.h>

namespace execd::test {

/// Checks that `r` is an error answer of `status` with a JSON body whose "code" is `code`
/// and whose "message" contains `needle` (doctest CHECKs; REQUIREs a response and JSON).
void check_error(const httplib::Result& r, int status, const std::string& code, const std::string& needle);

/// Standard base64 with padding (tus Upload-Metadata values).
std::string base64(const std::string& in);

}  // namespace execd::test
