#include "http/reverse_proxy.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>

#include "http/buffered_server.hpp"
#include "http/http_server.hpp"
#include "http/json_io.hpp"
#include "http/relayed_response.hpp"
#include "http/request_id.hpp"
#include "http/upstream_connection.hpp"
#include "http/websocket_frame.hpp"

namespace execd::http {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kPiece = 64 * 1024;

// RFC 9110 7.6.1: meaningful for one connection only. Proxy-* covers Proxy-Authorization,
// Proxy-Authenticate and the non-standard Proxy-Connection.
bool is_hop_by_hop(std::string_view name) {
  static constexpr std::string_view kNames[] = {"Connection", "Keep-Alive",        "TE",
                                                "Trailer",    "Transfer-Encoding", "Upgrade"};
  for (const auto n : kNames) {
    if (iequals(name, n)) return true;
  }
  return name.size() >= 6 && iequals(name.substr(0, 6), "Proxy-");
}

// Header names a Connection header lists are hop-by-hop too.
std::vector<std::string> connection_tokens(std::string_view value) {
  std::vector<std::string> out;
  while (!value.empty()) {
    const auto comma = value.find(',');
    std::string_view token = value.substr(0, comma);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (!token.empty()) out.emplace_back(token);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return out;
}

bool listed(const std::vector<std::string>& names, std::string_view name) {
  return std::any_of(names.begin(), names.end(), [&](const std::string& n) { return iequals(n, name); });
}

bool names_token(std::string_view value, std::string_view token) {
  return listed(connection_tokens(value), token);
}

// httplib files the peer's and our own address among the request's headers.
bool is_httplib_pseudo_header(std::string_view name) {
  return name == "REMOTE_ADDR" || name == "REMOTE_PORT" || name == "LOCAL_ADDR" || name == "LOCAL_PORT";
}

core::Error upstream_error(const core::Error& e) {
  return core::make_error(core::Errc::bad_gateway, "upstream " + e.message);
}

}  // namespace

// Idle upstream connections by endpoint, most recent last. A connection is put back only
// after a whole response (its framing ended, no Connection: close) and taken only if it
// still looks alive (nothing readable: no stray bytes, no close) and is not too old.
struct ReverseProxy::Pool {
  struct Idle {
    std::string key;
    UpstreamConnection conn;
    Clock::time_point since;
  };
  std::mutex mu;
  std::deque<Idle> idle;
  size_t max_per_key = 0;
  std::chrono::milliseconds keep{0};

  std::optional<UpstreamConnection> take(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu);
    const auto now = Clock::now();
    while (!idle.empty() && now - idle.front().since > keep) idle.pop_front();
    for (auto it = idle.end(); it != idle.begin();) {
      --it;
      if (it->key != key) continue;
      UpstreamConnection conn = std::move(it->conn);
      it = idle.erase(it);
      pollfd p{conn.fd(), POLLIN, 0};
      if (::poll(&p, 1, 0) == 0) return conn;
    }
    return std::nullopt;
  }
  void put(std::string key, UpstreamConnection conn) {
    if (max_per_key == 0) return;
    std::lock_guard<std::mutex> lock(mu);
    size_t same = 0;
    for (const auto& i : idle) same += i.key == key;
    if (same >= max_per_key) {
      for (auto it = idle.begin(); it != idle.end(); ++it) {
        if (it->key == key) {
          idle.erase(it);
          break;
        }
      }
    }
    idle.push_back(Idle{std::move(key), std::move(conn), Clock::now()});
  }
};

namespace {

// What a response body provider needs after forward() returns: httplib calls it while it
// writes the response, on the same thread, and destroys it with the Response.
struct BodyRelay {
  UpstreamConnection conn;
  std::unique_ptr<char[]> piece{new char[kPiece]};
  std::chrono::milliseconds idle;
  std::shared_ptr<ProxyStats> stats;
  std::string what;                          // "GET /path from host:port", for the log
  std::shared_ptr<ReverseProxy::Pool> pool;  // where the connection goes once the body is whole
  bool reusable = false;                     // the upstream did not say Connection: close
  bool complete = false;

  BodyRelay(UpstreamConnection c, std::chrono::milliseconds i, std::shared_ptr<ProxyStats> s, std::string w,
            std::shared_ptr<ReverseProxy::Pool> p, bool r)
      : conn(std::move(c)), idle(i), stats(std::move(s)), what(std::move(w)), pool(std::move(p)), reusable(r) {}
  BodyRelay(const BodyRelay&) = delete;
  BodyRelay& operator=(const BodyRelay&) = delete;
  ~BodyRelay() {
    if (!complete || !reusable) return;
    std::string key = conn.where();  // before the connection is moved from
    pool->put(std::move(key), std::move(conn));
  }

  // One piece of the body into the sink: false when the upstream broke off or the client
  // went away (httplib then closes the connection without a clean end).
  bool pump(size_t max, httplib::DataSink& sink, bool chunked) {
    auto n = conn.read_body(piece.get(), std::min(max, kPiece), Clock::now() + idle);
    if (!n) {
      stats->upstream_failures.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("proxy: {} broke off mid-body, cutting the client's response: {}", what, n.error().message);
      return false;
    }
    if (*n == 0) {
      if (!chunked) {
        // A Content-Length body cannot end early: read_body only says 0 once it is whole.
        return false;
      }
      complete = true;
      sink.done();
      return true;
    }
    stats->bytes_from_upstream.fetch_add(*n, std::memory_order_relaxed);
    if (!chunked && conn.remaining() == 0) complete = true;
    return sink.write(piece.get(), *n);
  }
};

// Sends everything in `buf` that the socket takes now; false on a send error.
bool flush_some(int fd, std::string& buf) {
  while (!buf.empty()) {
    const ssize_t n = ::send(fd, buf.data(), buf.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      buf.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  return true;
}

// Reads what `fd` has into `buf` (empty on entry); false on end of stream or error.
bool receive_some(int fd, std::string& buf) {
  char tmp[kPiece];
  for (;;) {
    const ssize_t n = ::recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
    if (n > 0) {
      buf.assign(tmp, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

// Copies bytes both ways between two sockets until either side closes or errs, both stay
// silent for `idle`, or `stopping` is set. One pending buffer per direction: a side is
// read only once what it sent before has been written to the other (backpressure).
void relay(int client, int upstream, std::string to_upstream, std::string to_client, std::chrono::milliseconds idle,
           const std::atomic<bool>* stopping, ProxyStats& stats) {
  auto last_traffic = Clock::now();
  for (;;) {
    if (!flush_some(upstream, to_upstream) || !flush_some(client, to_client)) return;
    if (stopping != nullptr && stopping->load()) return;
    if (Clock::now() - last_traffic > idle) {
      spdlog::info("proxy: WebSocket relay idle for {} s, closing", idle.count() / 1000);
      return;
    }
    pollfd p[2] = {{client, static_cast<short>(to_upstream.empty() ? POLLIN : 0), 0},
                   {upstream, static_cast<short>(to_client.empty() ? POLLIN : 0), 0}};
    if (!to_client.empty()) p[0].events |= POLLOUT;
    if (!to_upstream.empty()) p[1].events |= POLLOUT;
    const int r = ::poll(p, 2, 1000);
    if (r < 0 && errno != EINTR) return;
    if (r <= 0) continue;
    for (const auto& fd : p) {
      if ((fd.revents & (POLLERR | POLLNVAL)) != 0) return;
    }
    if ((p[0].revents & (POLLIN | POLLHUP)) != 0 && to_upstream.empty()) {
      if (!receive_some(client, to_upstream)) return;
      stats.bytes_to_upstream.fetch_add(to_upstream.size(), std::memory_order_relaxed);
      last_traffic = Clock::now();
    }
    if ((p[1].revents & (POLLIN | POLLHUP)) != 0 && to_client.empty()) {
      if (!receive_some(upstream, to_client)) {
        flush_some(client, to_client);
        return;
      }
      stats.bytes_from_upstream.fetch_add(to_client.size(), std::memory_order_relaxed);
      last_traffic = Clock::now();
    }
  }
}

}  // namespace

std::optional<std::string> target_after(std::string_view raw_target, std::string_view prefix) {
  if (raw_target.substr(0, prefix.size()) != prefix) return std::nullopt;
  std::string_view rest = raw_target.substr(prefix.size());
  if (rest.empty()) return std::string("/");
  if (rest.front() == '?') return "/" + std::string(rest);
  if (rest.front() != '/') return std::nullopt;
  return std::string(rest);
}

ReverseProxy::ReverseProxy(ProxyOptions options)
    : options_(std::move(options)), stats_(std::make_shared<ProxyStats>()), pool_(std::make_shared<Pool>()) {
  pool_->max_per_key = options_.max_idle_per_upstream;
  pool_->keep = options_.idle_keep;
}

void ReverseProxy::forward(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader* body,
                           const ProxyTarget& target, const std::string& upstream_target) const {
  stats_->requests.fetch_add(1, std::memory_order_relaxed);
  auto fail = [&](const core::Error& e) {
    stats_->upstream_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("proxy: {} {}: {}", req.method, upstream_target, e.message);
    // The client's body may be left unread.
    if (body != nullptr) BufferedServer::close_after_response(res);
    write_error(res, upstream_error(e));
  };

  const bool is_websocket = iequals(req.get_header_value("Upgrade"), "websocket") &&
                            names_token(req.get_header_value("Connection"), "upgrade");
  const HeadInfo* head_info = BufferedServer::current_head();
  const bool has_body = body != nullptr && (head_info == nullptr || head_info->has_body());
  // httplib hands the body over decoded when it carried a Content-Encoding (gzip): it goes
  // on without that header, and chunked since its length is no longer known.
  const bool decoded = !req.get_header_value("Content-Encoding").empty() &&
                       !iequals(req.get_header_value("Content-Encoding"), "identity");
  const bool send_chunked = has_body && (decoded || head_info == nullptr || !head_info->content_length);

  const auto hop = connection_tokens(req.get_header_value("Connection"));
  std::string head = req.method + " " + upstream_target + " HTTP/1.1\r\n";
  head += "Host: " +
          (target.endpoint.unix_path.empty() ? target.endpoint.host + ":" + std::to_string(target.endpoint.port)
                                             : std::string("localhost")) +
          "\r\n";
  std::string forwarded_for;
  for (const auto& [name, value] : req.headers) {
    if (is_hop_by_hop(name) || listed(hop, name) || is_httplib_pseudo_header(name) || iequals(name, "Host") ||
        iequals(name, "Content-Length") || iequals(name, "Expect") || iequals(name, kRequestIdHeader) ||
        iequals(name, "X-Forwarded-Proto") || iequals(name, "X-Forwarded-Host") ||
        listed(options_.withheld_headers, name) ||
        std::any_of(target.headers.begin(), target.headers.end(),
                    [&](const auto& h) { return iequals(h.first, name); }) ||
        (decoded && iequals(name, "Content-Encoding"))) {
      continue;
    }
    if (iequals(name, "X-Forwarded-For")) {
      forwarded_for += (forwarded_for.empty() ? "" : ", ") + value;
      continue;
    }
    // The access token offered as a subprotocol is ours: it never goes upstream.
    if (iequals(name, "Sec-WebSocket-Protocol")) {
      const std::string kept = without_token_offers(value);
      if (!kept.empty()) head += name + ": " + kept + "\r\n";
      continue;
    }
    head += name + ": " + value + "\r\n";
  }
  head += "X-Forwarded-For: " + forwarded_for + (forwarded_for.empty() ? "" : ", ") + req.remote_addr + "\r\n";
  const std::string proto = req.get_header_value("X-Forwarded-Proto");
  head += "X-Forwarded-Proto: " + (proto.empty() ? std::string("http") : proto) + "\r\n";
  const std::string fwd_host = req.get_header_value("X-Forwarded-Host");
  const std::string client_host = fwd_host.empty() ? req.get_header_value("Host") : fwd_host;
  if (!client_host.empty()) head += "X-Forwarded-Host: " + client_host + "\r\n";
  head += std::string(kRequestIdHeader) + ": " + HttpServer::current_request_id() + "\r\n";
  for (const auto& [name, value] : target.headers) head += name + ": " + value + "\r\n";
  // Otherwise HTTP/1.1's default: the connection may be kept alive for the next request.
  if (is_websocket) head += "Connection: Upgrade\r\nUpgrade: websocket\r\n";
  if (send_chunked) {
    head += "Transfer-Encoding: chunked\r\n";
  } else if (has_body) {
    head += "Content-Length: " + std::to_string(*head_info->content_length) + "\r\n";
  } else if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
             (head_info != nullptr && head_info->content_length)) {
    head += "Content-Length: 0\r\n";  // an empty body, said as clients say it
  }
  head += "\r\n";

  // A pooled connection may have been closed by the upstream since: a request without a
  // body that is safe to repeat (GET, HEAD, OPTIONS) is then sent again on a fresh one.
  const bool may_reuse =
      !is_websocket && body == nullptr && (req.method == "GET" || req.method == "HEAD" || req.method == "OPTIONS");
  const std::string key = UpstreamConnection::where_of(target.endpoint);
  std::optional<UpstreamConnection> pooled = may_reuse ? pool_->take(key) : std::nullopt;
  core::Result<UpstreamConnection> conn =
      pooled ? core::Result<UpstreamConnection>(std::move(*pooled))
             : UpstreamConnection::open(target.endpoint, Clock::now() + options_.connect_timeout);
  if (!conn) return fail(conn.error());
  auto sent = conn->send(head, Clock::now() + options_.idle_timeout);
  if (!sent && pooled) {
    conn = UpstreamConnection::open(target.endpoint, Clock::now() + options_.connect_timeout);
    if (!conn) return fail(conn.error());
    pooled.reset();
    sent = conn->send(head, Clock::now() + options_.idle_timeout);
  }
  if (!sent) return fail(sent.error());

  // The body goes up as it arrives. An upstream that answers early (413, 401) and stops
  // reading makes a send fail: its answer is still read and relayed below.
  bool body_done = !has_body;
  if (has_body) {
    // httplib hands a multipart body to its form parser even through a ContentReader;
    // relabelled for the read, the bytes come to us as they are (the upstream got the
    // real Content-Type in the head above). The Request is httplib's own non-const object.
    auto& request = const_cast<httplib::Request&>(req);
    std::vector<std::string> content_types;
    if (req.is_multipart_form_data()) {
      auto [first, last] = request.headers.equal_range("Content-Type");
      for (auto it = first; it != last; ++it) {
        content_types.push_back(std::exchange(it->second, "application/octet-stream"));
      }
    }
    std::string framed;
    body_done = (*body)([&](const char* data, size_t len) {
      if (len == 0) return true;
      std::string_view out(data, len);
      if (send_chunked) {
        char size_line[24];
        const int k = std::snprintf(size_line, sizeof size_line, "%zx\r\n", len);
        framed.assign(size_line, static_cast<size_t>(k));
        framed.append(data, len);
        framed += "\r\n";
        out = framed;
      }
      if (!conn->send(out, Clock::now() + options_.idle_timeout)) return false;
      stats_->bytes_to_upstream.fetch_add(len, std::memory_order_relaxed);
      return true;
    });
    if (!content_types.empty()) {
      auto [first, last] = request.headers.equal_range("Content-Type");
      for (size_t i = 0; first != last && i < content_types.size(); ++first, ++i) first->second = content_types[i];
    }
    if (body_done && send_chunked) body_done = conn->send("0\r\n\r\n", Clock::now() + options_.idle_timeout).ok();
    // What the client did not send, or the upstream did not take, would be read as the
    // next request.
    if (!body_done) BufferedServer::close_after_response(res);
  }

  auto response_head = conn->read_head(req.method, Clock::now() + options_.idle_timeout);
  if (!response_head && pooled) {
    conn = UpstreamConnection::open(target.endpoint, Clock::now() + options_.connect_timeout);
    if (!conn) return fail(conn.error());
    if (auto again = conn->send(head, Clock::now() + options_.idle_timeout); !again) return fail(again.error());
    response_head = conn->read_head(req.method, Clock::now() + options_.idle_timeout);
  }
  if (!response_head) {
    return fail(body_done
                    ? response_head.error()
                    : conn->fail("the request body could not be forwarded (" + response_head.error().message + ")"));
  }

  if (is_websocket && response_head->status == 101) {
    // An upstream that did not understand the key (or a stale proxy between) must not get
    // the client's socket: RFC 6455 4.1 has the client fail such a handshake, so we do.
    if (response_head->header("Sec-WebSocket-Accept") != websocket_accept(req.get_header_value("Sec-WebSocket-Key"))) {
      return fail(conn->fail("the upstream's Sec-WebSocket-Accept does not match the client's key"));
    }
    std::string from_client;
    const int client_fd = BufferedServer::take_over_connection(from_client);
    if (client_fd < 0) return fail(conn->fail("no client connection to hand the WebSocket to"));
    std::string to_client =
        "HTTP/1.1 101 " + (response_head->reason.empty() ? std::string("Switching Protocols") : response_head->reason) +
        "\r\n";
    for (const auto& [name, value] : response_head->headers) {
      if (!iequals(name, kRequestIdHeader)) to_client += name + ": " + value + "\r\n";
    }
    to_client += std::string(kRequestIdHeader) + ": " + HttpServer::current_request_id() + "\r\n\r\n";
    to_client += conn->take_buffered();
    stats_->websockets_open.fetch_add(1, std::memory_order_relaxed);
    relay(client_fd, conn->fd(), std::move(from_client), std::move(to_client), options_.idle_timeout, options_.stopping,
          *stats_);
    stats_->websockets_open.fetch_sub(1, std::memory_order_relaxed);
    res.status = 101;  // for the access log; what httplib writes now is dropped
    return;
  }

  res.status = response_head->status;
  mark_relayed_response();
  const auto response_hop = connection_tokens(response_head->header("Connection"));
  std::string content_type;
  for (const auto& [name, value] : response_head->headers) {
    if (iequals(name, "Content-Type")) {
      content_type = value;
      continue;
    }
    if (is_hop_by_hop(name) || listed(response_hop, name) || iequals(name, kRequestIdHeader) ||
        (iequals(name, "Content-Length") && req.method != "HEAD")) {
      continue;
    }
    res.set_header(name, value);
  }
  // httplib would compress text it writes when the client accepts gzip: the body goes out
  // exactly as the upstream sent it, unbuffered. The Request is httplib's own non-const
  // object.
  const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");

  const BodyFraming framing = conn->framing();
  const bool reusable = !names_token(response_head->header("Connection"), "close");
  if (framing == BodyFraming::none) {
    if (!content_type.empty()) res.set_header("Content-Type", content_type);
    if (reusable && body_done) pool_->put(key, std::move(*conn));
    return;
  }
  if (content_type.empty()) content_type = "application/octet-stream";
  std::string what = req.method + " " + upstream_target + " from " + conn->where();
  auto relay_state = std::make_shared<BodyRelay>(std::move(*conn), options_.idle_timeout, stats_, std::move(what),
                                                 pool_, reusable && body_done && framing != BodyFraming::until_close);
  if (framing == BodyFraming::length) {
    res.set_content_provider(static_cast<size_t>(relay_state->conn.remaining()), content_type,
                             [relay_state](size_t /*offset*/, size_t length, httplib::DataSink& sink) {
                               return relay_state->pump(length, sink, false);
                             });
  } else {
    res.set_chunked_content_provider(content_type, [relay_state](size_t /*offset*/, httplib::DataSink& sink) {
      return relay_state->pump(kPiece, sink, true);
    });
  }
}

void add_proxy_routes(HttpServer& server, const std::string& pattern, std::shared_ptr<const ReverseProxy> proxy,
                      ProxyResolver resolve) {
  auto without_body = [proxy, resolve](const httplib::Request& req, httplib::Response& res) {
    auto call = resolve(req);
    if (!call) return write_error(res, call.error());
    proxy->forward(req, res, nullptr, call->target, call->upstream_target);
  };
  auto with_body = [proxy, resolve](const httplib::Request& req, httplib::Response& res,
                                    const httplib::ContentReader& reader) {
    auto call = resolve(req);
    if (!call) return write_error(res, call.error());  // route_streaming closes: the body is unread
    proxy->forward(req, res, &reader, call->target, call->upstream_target);
  };
  using M = HttpServer::Method;
  server.route(M::get, pattern, without_body);
  server.route(M::options, pattern, without_body);
  for (const M m : {M::post, M::put, M::patch, M::del}) server.route_streaming(m, pattern, with_body);
}

}  // namespace execd::http
