#pragma once

#include <string>

#include <httplib.h>

namespace execd::test {

/// Checks that `r` is an error answer of `status` with a JSON body whose "code" is `code`
/// and whose "message" contains `needle` (doctest CHECKs; REQUIREs a response and JSON).
void check_error(const httplib::Result& r, int status, const std::string& code, const std::string& needle);

/// A loopback port nothing listens on now: the kernel's pick for a socket that is bound,
/// never listened on, and closed (a dead upstream, or a port a server is told to take).
int unused_loopback_port();

/// A blocking TCP connection to 127.0.0.1:`port` (the caller closes it), or -1.
int connect_loopback(int port);

/// Standard base64 with padding (tus Upload-Metadata values).
std::string base64(const std::string& in);

}  // namespace execd::test
