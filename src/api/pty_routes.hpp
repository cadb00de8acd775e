#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "http/http_server.hpp"
#include "pty/pty_registry.hpp"

namespace execd::api {

/// Interactive terminals over WebSocket (OpenSandbox's /pty, issue 14):
///   POST   /pty               {"cwd"?,"envs"?,"cols"?,"rows"?} -> {"session_id"}; the shell
///                             starts on the first WebSocket
///   GET    /pty/{id}          -> session_id, running, exit_code, output_offset, mode, ...
///   DELETE /pty/{id}          -> kills the shell's whole session, closes its WebSocket
///   GET    /pty/{id}/ws       WebSocket upgrade; ?pty=0 pipe mode, ?since=<offset> replay,
///                             ?takeover=1 evicts the holder (else a second socket is 409)
///
/// On the socket: first a text frame {"type":"connected",...}; then binary frames whose
/// first byte is the channel: 0x01 stdout, 0x02 stderr (pipe mode), 0x03 replay followed
/// by the 8-byte big-endian offset of its first byte. The client sends stdin as binary
/// 0x00 + bytes and JSON text frames {"type":"resize","cols","rows"},
/// {"type":"signal","signal":"SIGINT"}, {"type":"ping"} (answered {"type":"pong"}). A bad
/// client frame gets {"type":"error","code","message"}; the shell's exit sends
/// {"type":"exit","exit_code":N} and closes with 1000; a takeover closes the old socket
/// with 4001 TAKEN_OVER. The access token may come as the subprotocol
/// `execd.token.<token>` beside `execd` (HttpServer checks it; the answer names `execd`).
struct PtyRouteOptions {
  size_t max_message_bytes = 1u << 20;             ///< a client frame larger: close 1009
  std::chrono::milliseconds idle_timeout{300000};  ///< no frame (pongs count) this long: close 1001
  std::chrono::milliseconds ping_interval{30000};
};
void register_pty_routes(http::HttpServer& server, std::shared_ptr<pty::PtyRegistry> registry,
                         PtyRouteOptions options = {});

}  // namespace execd::api
