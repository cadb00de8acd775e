#include "api/pty_routes.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "api/isolation_fields.hpp"
#include "api/query_params.hpp"
#include "api/request_fields.hpp"
#include "http/buffered_server.hpp"
#include "http/error_mapping.hpp"
#include "http/json_io.hpp"
#include "http/request_id.hpp"
#include "http/websocket_connection.hpp"
#include "http/websocket_frame.hpp"

namespace execd::api {
namespace {

using Method = http::HttpServer::Method;
using nlohmann::json;

constexpr uint8_t kStdinChannel = 0x00;
constexpr uint8_t kReplayChannel = 0x03;
constexpr size_t kPiece = 64 * 1024;
constexpr std::chrono::milliseconds kPumpWake{1000};
constexpr const char* kProtocol = "execd";

const char* mode_name(pty::PtyMode m) {
  return m == pty::PtyMode::pty ? "pty" : "pipe";
}

json status_json(const pty::PtyStatus& s) {
  return {{"session_id", s.id},
          {"running", s.running},
          {"exit_code", s.exit_code ? json(*s.exit_code) : json(nullptr)},
          {"output_offset", s.output_offset},
          {"output_begin", s.output_begin},
          {"started", s.started},
          {"mode", s.started ? json(mode_name(s.mode)) : json(nullptr)},
          {"pid", s.started ? json(s.pid) : json(nullptr)},
          {"attached", s.attached},
          {"cols", s.cols},
          {"rows", s.rows},
          {"cwd", s.cwd},
          {"created_at_ms", s.created_at_ms}};
}

// A flag in the query: absent, 0/1 or false/true; anything else names the parameter.
core::Result<std::optional<bool>> flag_query(const httplib::Request& req, const std::string& name) {
  if (!req.has_param(name.c_str())) return std::optional<bool>();
  const std::string v = req.get_param_value(name.c_str());
  if (v == "1" || v == "true") return std::optional<bool>(true);
  if (v == "0" || v == "false") return std::optional<bool>(false);
  return core::make_error(core::Errc::invalid_argument,
                          "query parameter '" + name + "' must be 0 or 1, got '" + v + "'");
}

core::Result<pty::PtySpec> parse_create(const httplib::Request& req, isolation::Isolator* isolator) {
  auto body = http::parse_json_body(req, /*allow_empty=*/true);
  if (!body) return body.error();
  if (auto obj = require_object(*body); !obj) return obj.error();
  auto cwd = string_field(*body, "cwd");
  if (!cwd) return cwd.error();
  auto envs = string_map_field(*body, "envs");
  if (!envs) return envs.error();
  auto cols = int_field(*body, "cols", 1, 1000);
  if (!cols) return cols.error();
  auto rows = int_field(*body, "rows", 1, 1000);
  if (!rows) return rows.error();
  // The isolation fields every execution route takes, over the daemon's defaults.
  auto limits = request_limits(*body, isolator);
  if (!limits) return limits.error();
  pty::PtySpec spec;
  spec.cwd = cwd->value_or("");
  spec.envs = std::move(*envs);
  spec.cols = static_cast<uint16_t>(cols->value_or(80));
  spec.rows = static_cast<uint16_t>(rows->value_or(24));
  spec.limits = *limits;
  return spec;
}

std::string error_frame(const core::Error& e) {
  return json{{"type", "error"}, {"code", http::map_error(e.code).code}, {"message", e.message}}.dump();
}

std::string be64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) out[static_cast<size_t>(i)] = static_cast<char>(v & 0xFF);
  return out;
}

// What a takeover reaches: the socket of the current holder, once it exists.
struct Holder {
  std::mutex mu;
  http::WebSocketConnection* ws = nullptr;
  bool evicted = false;
  void evict() {
    std::lock_guard<std::mutex> lock(mu);
    evicted = true;
    if (ws != nullptr) ws->close(http::ws_close::kTakenOver, "TAKEN_OVER");
  }
  void set(http::WebSocketConnection* socket) {
    std::lock_guard<std::mutex> lock(mu);
    ws = socket;
    if (ws != nullptr && evicted) ws->close(http::ws_close::kTakenOver, "TAKEN_OVER");
  }
};

// Output to the socket: the replay [replay_from, live_from) as 0x03 frames, then live
// bytes on their channels; at the end of a closed scrollback, the exit frame and close.
void pump_output(http::WebSocketConnection& ws, pty::PtySession& session, uint64_t replay_from, uint64_t live_from,
                 const std::atomic<bool>& done) {
  pty::Scrollback& out = session.output();
  uint64_t at = replay_from;
  while (at < live_from && !done.load()) {
    auto c = out.read(at, static_cast<size_t>(std::min<uint64_t>(kPiece, live_from - at)));
    if (c.bytes.empty()) break;
    std::string frame(1, static_cast<char>(kReplayChannel));
    frame += be64(c.offset);
    frame += c.bytes;
    if (!ws.send_binary(frame)) return;
    at = c.offset + c.bytes.size();
  }
  at = std::max(at, live_from);
  while (!done.load()) {
    // Closed is read before the bytes: every byte precedes the close, so an empty read
    // after a close is the true end.
    const bool closed = out.is_closed();
    auto c = out.read(at, kPiece);
    if (!c.bytes.empty()) {
      std::string frame(1, static_cast<char>(c.channel));
      frame += c.bytes;
      if (!ws.send_binary(frame)) return;
      at = c.offset + c.bytes.size();
      continue;
    }
    if (closed) {
      const auto code = session.exit_code();
      ws.send_text(json{{"type", "exit"}, {"exit_code", code ? json(*code) : json(nullptr)}}.dump());
      ws.close(http::ws_close::kNormal, "exit");
      return;
    }
    out.wait_beyond(at, kPumpWake);
  }
}

void on_client_message(http::WebSocketConnection& ws, pty::PtySession& session, http::WsOpcode opcode,
                       const std::string& payload) {
  auto reply_error = [&](const core::Error& e) { ws.send_text(error_frame(e)); };
  if (opcode == http::WsOpcode::binary) {
    if (payload.empty() || static_cast<uint8_t>(payload[0]) != kStdinChannel) {
      return reply_error(core::make_error(core::Errc::invalid_argument,
                                          "binary frames from the client are stdin: the byte 0x00, then the bytes"));
    }
    if (auto r = session.write_stdin(std::string_view(payload).substr(1)); !r) reply_error(r.error());
    return;
  }
  const json msg = json::parse(payload, nullptr, false);
  if (msg.is_discarded() || !msg.is_object() || !msg.contains("type") || !msg["type"].is_string()) {
    return reply_error(
        core::make_error(core::Errc::invalid_argument,
                         "text frames must be JSON objects with a string \"type\" (resize, signal, ping)"));
  }
  const std::string type = msg["type"].get<std::string>();
  if (type == "ping") {
    ws.send_text(R"({"type":"pong"})");
    return;
  }
  if (type == "resize") {
    auto cols = int_field(msg, "cols", 1, 1000);
    auto rows = int_field(msg, "rows", 1, 1000);
    if (!cols) return reply_error(cols.error());
    if (!rows) return reply_error(rows.error());
    if (!*cols || !*rows) {
      return reply_error(core::make_error(core::Errc::invalid_argument, "resize needs \"cols\" and \"rows\""));
    }
    if (auto r = session.resize(static_cast<uint16_t>(**cols), static_cast<uint16_t>(**rows)); !r)
      reply_error(r.error());
    return;
  }
  if (type == "signal") {
    auto sig = string_field(msg, "signal");
    if (!sig) return reply_error(sig.error());
    if (!*sig)
      return reply_error(core::make_error(core::Errc::invalid_argument, "signal needs \"signal\" (e.g. SIGINT)"));
    if (auto r = session.signal(**sig); !r) reply_error(r.error());
    return;
  }
  reply_error(
      core::make_error(core::Errc::invalid_argument, "unknown message type '" + type + "' (resize, signal, ping)"));
}

void serve_websocket(http::HttpServer& server, const std::shared_ptr<pty::PtyRegistry>& registry,
                     const PtyRouteOptions& options, const httplib::Request& req, httplib::Response& res) {
  auto session = registry->find(req.matches[1]);
  if (!session) {
    return http::write_error(
        res, core::make_error(core::Errc::not_found, "pty session " + std::string(req.matches[1]) + " not found"));
  }
  http::WsUpgrade upgrade;
  if (auto bad = http::check_websocket_upgrade(req, upgrade)) {
    http::write_error(res, core::make_error(core::Errc::invalid_argument, bad->message));
    res.status = bad->status;
    if (bad->status == 426) res.set_header("Sec-WebSocket-Version", "13");
    return;
  }
  auto pipe = flag_query(req, "pty");
  if (!pipe) return http::write_error(res, pipe.error());
  auto takeover = flag_query(req, "takeover");
  if (!takeover) return http::write_error(res, takeover.error());
  auto since = uint_query(req, "since");
  if (!since) return http::write_error(res, since.error());
  const pty::PtyMode mode = pipe->value_or(true) ? pty::PtyMode::pty : pty::PtyMode::pipe;

  // Live output is everything from here on: the prompt of a shell this attach starts, and
  // whatever a running one prints during the handshake (read later, it was lost).
  const uint64_t live_from = session->output().end();
  if (auto started = session->start(mode); !started) return http::write_error(res, started.error());
  auto holder = std::make_shared<Holder>();
  auto token = session->attach(takeover->value_or(false), [holder] { holder->evict(); });
  if (!token) return http::write_error(res, token.error());

  std::string buffered;
  const int fd = http::BufferedServer::take_over_connection(buffered);
  if (fd < 0) {
    session->detach(*token);
    return http::write_error(res, core::make_error(core::Errc::internal, "no connection to upgrade"));
  }
  res.status = 101;  // for the access log; what httplib writes from now on is dropped
  http::WebSocketConnection::Options wo;
  wo.max_message_bytes = options.max_message_bytes;
  wo.idle_timeout = options.idle_timeout;
  wo.ping_interval = options.ping_interval;
  wo.stopping = &server.stopping_flag();
  // Detached before our close frame goes out: a client that got it may attach again at once.
  wo.on_closing = [session, t = *token] { session->detach(t); };
  http::WebSocketConnection ws(fd, std::move(buffered), wo);
  const bool offers_execd =
      std::find(upgrade.protocols.begin(), upgrade.protocols.end(), kProtocol) != upgrade.protocols.end();
  const std::string extra =
      std::string(http::kRequestIdHeader) + ": " + http::HttpServer::current_request_id() + "\r\n";
  if (!ws.send_raw(http::websocket_accept_head(upgrade.key, offers_execd ? kProtocol : "", extra))) {
    session->detach(*token);
    return;
  }
  holder->set(&ws);

  const uint64_t replay_from =
      since->has_value() ? std::clamp(**since, session->output().begin(), live_from) : live_from;
  const auto st = session->status();
  json connected{{"type", "connected"}, {"session_id", session->id()}, {"mode", mode_name(st.mode)},
                 {"offset", live_from}, {"running", st.running},       {"cols", st.cols},
                 {"rows", st.rows}};
  if (since->has_value()) connected["replay_from"] = replay_from;
  ws.send_text(connected.dump());

  std::atomic<bool> done{false};
  std::thread pump([&] {
    try {
      pump_output(ws, *session, replay_from, live_from, done);
    } catch (const std::exception& e) {
      spdlog::error("pty {}: output pump failed: {}", session->id(), e.what());
      ws.close(http::ws_close::kInternal, "output pump failed");
    }
  });
  const http::WsCloseInfo ended =
      ws.run([&](http::WsOpcode opcode, std::string& payload) { on_client_message(ws, *session, opcode, payload); });
  done.store(true);
  session->output().notify();
  pump.join();
  holder->set(nullptr);
  session->detach(*token);
  spdlog::debug("pty {}: WebSocket closed ({} {})", session->id(), ended.code, ended.reason);
}

}  // namespace

void register_pty_routes(http::HttpServer& server, std::shared_ptr<pty::PtyRegistry> registry,
                         PtyRouteOptions options) {
  server.route(Method::post, R"(/pty)", [registry](const httplib::Request& req, httplib::Response& res) {
    auto spec = parse_create(req, registry->isolator().get());
    if (!spec) return http::write_error(res, spec.error());
    auto session = registry->create(std::move(*spec));
    if (!session) return http::write_error(res, session.error());
    http::write_json(res, {{"session_id", (*session)->id()}});
  });

  server.route(Method::get, R"(/pty/([^/]+))", [registry](const httplib::Request& req, httplib::Response& res) {
    auto session = registry->find(req.matches[1]);
    if (!session) {
      return http::write_error(
          res, core::make_error(core::Errc::not_found, "pty session " + std::string(req.matches[1]) + " not found"));
    }
    http::write_json(res, status_json(session->status()));
  });

  server.route(Method::del, R"(/pty/([^/]+))", [registry](const httplib::Request& req, httplib::Response& res) {
    if (auto r = registry->remove(req.matches[1]); !r) return http::write_error(res, r.error());
    http::write_json(res, {{"session_id", std::string(req.matches[1])}, {"deleted", true}});
  });

  server.route(Method::get, R"(/pty/([^/]+)/ws)",
               [&server, registry, options](const httplib::Request& req, httplib::Response& res) {
                 serve_websocket(server, registry, options, req, res);
               });
}

}  // namespace execd::api
