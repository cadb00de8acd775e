#include "http/http_server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include <thread>
#include <utility>

#include "core/bytes.hpp"
#include "http/elastic_thread_pool.hpp"
#include "http/json_io.hpp"
#include "http/relayed_response.hpp"
#include "http/request_id.hpp"
#include "http/websocket_frame.hpp"

namespace execd::http {
namespace {

constexpr int kListenBacklog = 4096;  // httplib's compiled-in backlog of 5 drops bursts

const char* method_name(HttpServer::Method m) {
  switch (m) {
    case HttpServer::Method::get: return "GET";
    case HttpServer::Method::post: return "POST";
    case HttpServer::Method::put: return "PUT";
    case HttpServer::Method::patch: return "PATCH";
    case HttpServer::Method::del: return "DELETE";
    case HttpServer::Method::options: return "OPTIONS";
  }
  return "?";
}

HttpServer::Method method_of(const std::string& m) {
  if (m == "POST") return HttpServer::Method::post;
  if (m == "PUT") return HttpServer::Method::put;
  if (m == "PATCH") return HttpServer::Method::patch;
  if (m == "DELETE") return HttpServer::Method::del;
  if (m == "OPTIONS") return HttpServer::Method::options;
  return HttpServer::Method::get;
}

thread_local std::string current_request_id_value;
thread_local bool is_relayed = false;

// Sets the request's id (once per request) on the thread and on the response.
void tag_request(const httplib::Request& req, httplib::Response& res) {
  if (res.has_header(kRequestIdHeader)) return;
  current_request_id_value = accept_request_id(req.get_header_value(kRequestIdHeader));
  res.set_header(kRequestIdHeader, current_request_id_value);
}

bool has_body_to_read() {
  const HeadInfo* head = BufferedServer::current_head();
  return head == nullptr || head->has_body();
}

}  // namespace

HttpServer::HttpServer(ServerOptions options) : options_(std::move(options)), server_(std::make_unique<BufferedServer>()) {
  auto& s = *server_;
  const size_t max_threads = options_.max_threads;
  s.new_task_queue = [max_threads] { return new ElasticThreadPool(2, max_threads, std::chrono::seconds(5)); };
  s.set_tcp_nodelay(true);
  s.set_keep_alive_max_count(100000);
  s.set_keep_alive_timeout(5);
  s.set_read_timeout(options_.read_timeout);
  HeadLimits limits;
  limits.max_header_count = options_.max_header_count;
  limits.max_head_bytes = options_.max_header_bytes;
  s.set_head_limits(limits);
  s.set_write_timeout(std::chrono::seconds(30));
  s.set_socket_options([this](socket_t sock) {
    // Not httplib's default: it sets SO_REUSEPORT, which would let a second daemon
    // share our port silently.
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_fd_ = sock;
  });

  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // httplib would slice every answer to a request with a Range header, errors included
    // (a 404 came back as 11 bytes of its JSON). /files/download answers Range itself from
    // the header; nothing else serves ranges. The Request is httplib's own non-const object.
    const_cast<httplib::Request&>(req).ranges.clear();
    is_relayed = false;
    tag_request(req, res);
    if (is_authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
    if (has_body_to_read()) BufferedServer::close_after_response(res);  // the body stays unread
    write_error(res, core::make_error(core::Errc::unauthorized,
                                      "invalid or missing header " + options_.auth_header));
    return httplib::Server::HandlerResponse::Handled;
  });

  // "Expect: 100-continue" with a body over the cap of a route() (not an upload): 413
  // instead of inviting the client to send it.
  s.set_expect_100_continue_handler([this](const httplib::Request& req, httplib::Response& res) {
    const HeadInfo* head = BufferedServer::current_head();
    if (head == nullptr || head->content_length.value_or(0) <= options_.max_request_bytes) return 100;
    const Method m = method_of(req.method);
    for (const auto& r : routes_) {
      if (r.method == m && r.is_streaming && std::regex_match(req.path, r.pattern)) return 100;
    }
    BufferedServer::close_after_response(res);
    write_error(res, core::make_error(core::Errc::too_large, "request body of " +
                                                                 std::to_string(*head->content_length) +
                                                                 " bytes is over the limit of " +
                                                                 std::to_string(options_.max_request_bytes) +
                                                                 " (--max-request-bytes)"));
    return 413;
  });

  s.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    // httplib calls this for every status >= 400; a body means a route already wrote
    // its error. What is left: its own 404 (no route) and protocol errors (400, 413, 414).
    // Those can come before the pre-routing handler ran: the request id is set here too.
    tag_request(req, res);
    if (!res.body.empty() || is_relayed) return httplib::Server::HandlerResponse::Unhandled;
    if (res.status == 404) {
      std::string allow;
      if (path_matches_other_method(req.path, method_of(req.method), allow)) {
        res.set_header("Allow", allow);
        write_error(res, core::make_error(core::Errc::method_not_allowed,
                                          "method " + req.method + " is not allowed on " + req.path + " (allowed: " +
                                              allow + ")"));
      } else {
        write_error(res, core::make_error(core::Errc::route_not_found, "no route for " + req.method + " " + req.path));
      }
      return httplib::Server::HandlerResponse::Handled;
    }
    const int status = res.status;
    const core::Errc code = status == 413   ? core::Errc::too_large
                            : status == 416 ? core::Errc::range_not_satisfiable
                                            : core::Errc::invalid_argument;
    write_error(res, core::make_error(code, status == 416 ? "malformed Range header: " + req.get_header_value("Range")
                                                          : "malformed request (HTTP " + std::to_string(status) + ")"));
    res.status = status;
    return httplib::Server::HandlerResponse::Handled;
  }));

  s.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    if (!spdlog::should_log(spdlog::level::debug)) return;
    const auto took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                                BufferedServer::current_start());
    spdlog::debug("http: {} {} {} {:.2f} ms request_id={}", req.method, req.path, res.status, took.count(),
                  res.get_header_value(kRequestIdHeader));
  });

  s.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("http: {} {} failed: {}", req.method, req.path, what);
    write_error(res, core::make_error(core::Errc::internal, "internal error: " + what));
  });
}

HttpServer::~HttpServer() = default;

void HttpServer::allow_without_token(const std::string& pattern) { public_paths_.emplace_back(pattern); }

bool HttpServer::is_authorized(const httplib::Request& req) const {
  if (options_.access_token.empty()) return true;
  if (req.method == "GET" || req.method == "HEAD") {
    for (const auto& p : public_paths_) {
      if (std::regex_match(req.path, p)) return true;
    }
  }
  if (core::constant_time_equals(options_.access_token, req.get_header_value(options_.auth_header.c_str()))) return true;
  // Browsers cannot set headers on a WebSocket: an upgrade may offer the token as the
  // subprotocol `execd.token.<token>` (beside `execd`, which the route answers with).
  if (req.get_header_value("Upgrade").empty()) return false;
  const std::string_view prefix = kTokenSubprotocolPrefix;
  for (const auto& offer : websocket_protocols(req)) {
    if (offer.size() > prefix.size() && offer.compare(0, prefix.size(), prefix) == 0 &&
        core::constant_time_equals(options_.access_token, std::string_view(offer).substr(prefix.size()))) {
      return true;
    }
  }
  return false;
}

bool HttpServer::path_matches_other_method(const std::string& path, Method except, std::string& allow) const {
  for (const auto& r : routes_) {
    if (r.method == except) continue;
    if (std::regex_match(path, r.pattern)) {
      if (!allow.empty()) allow += ", ";
      allow += method_name(r.method);
    }
  }
  return !allow.empty();
}

bool HttpServer::read_body(const httplib::Request& req, httplib::Response& res,
                           const httplib::ContentReader& reader) const {
  // RFC 9112 6.3: a request with neither Content-Length nor chunked has no body; httplib
  // would read one until the peer closes.
  if (!has_body_to_read()) return true;
  const uint64_t cap = options_.max_request_bytes;
  const HeadInfo* head = BufferedServer::current_head();
  const uint64_t announced = head != nullptr ? head->content_length.value_or(0) : 0;
  if (announced > cap) {
    BufferedServer::close_after_response(res);
    write_error(res, core::make_error(core::Errc::too_large, "request body of " + std::to_string(announced) +
                                                                 " bytes is over the limit of " + std::to_string(cap) +
                                                                 " (--max-request-bytes)"));
    return false;
  }
  BufferedServer::bound_body(options_.read_timeout);
  // httplib hands a multipart body to its own form parser even through a ContentReader;
  // relabelled for the read, the body comes to us as bytes. The Request is httplib's own
  // non-const object.
  auto& request = const_cast<httplib::Request&>(req);
  std::vector<std::string> content_types;
  const bool relabel = req.is_multipart_form_data();
  if (relabel) {
    auto [first, last] = request.headers.equal_range("Content-Type");
    for (auto it = first; it != last; ++it) content_types.push_back(std::exchange(it->second, "application/octet-stream"));
  }
  std::string body;
  body.reserve(static_cast<size_t>(announced));
  bool over = false;
  const bool done = reader([&](const char* data, size_t len) {
    if (body.size() + len > cap) {
      over = true;
      return false;
    }
    body.append(data, len);
    return true;
  });
  if (relabel) {
    auto [first, last] = request.headers.equal_range("Content-Type");
    for (size_t i = 0; first != last && i < content_types.size(); ++first, ++i) first->second = content_types[i];
  }
  if (over || !done) {
    BufferedServer::close_after_response(res);
    write_error(res, over ? core::make_error(core::Errc::too_large, "request body is over the limit of " +
                                                                        std::to_string(cap) + " bytes (--max-request-bytes)")
                          : core::make_error(core::Errc::invalid_argument,
                                             "request body was cut off, malformed, in an unsupported Content-Encoding, "
                                             "or not received within the read timeout"));
    return false;
  }
  request.body = std::move(body);
  return true;
}

void HttpServer::route(Method method, const std::string& pattern, Handler handler) {
  routes_.push_back({method, std::regex(pattern)});
  auto& s = *server_;
  if (method == Method::get || method == Method::options) {
    if (method == Method::get) s.Get(pattern, std::move(handler));
    else s.Options(pattern, std::move(handler));
    return;
  }
  // Routes with a body read it through a ContentReader: httplib neither buffers it
  // unbounded nor form-parses it (with an 8 KiB cap) when it is labelled urlencoded.
  auto with_body = [this, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res,
                                                         const httplib::ContentReader& reader) {
    if (read_body(req, res, reader)) handler(req, res);
  };
  switch (method) {
    case Method::post: s.Post(pattern, std::move(with_body)); break;
    case Method::put: s.Put(pattern, std::move(with_body)); break;
    case Method::patch: s.Patch(pattern, std::move(with_body)); break;
    case Method::del: s.Delete(pattern, std::move(with_body)); break;
    default: break;
  }
}

void HttpServer::route_streaming(Method method, const std::string& pattern, ReaderHandler handler) {
  routes_.push_back({method, std::regex(pattern), true});
  auto& s = *server_;
  auto tracked = [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res,
                                                const httplib::ContentReader& reader) {
    const bool has_body = has_body_to_read();
    bool finished = !has_body;
    httplib::ContentReader once(
        [&](httplib::ContentReceiver receiver) {
          if (!has_body) return true;
          finished = reader(std::move(receiver));
          return finished;
        },
        [&](httplib::MultipartContentHeader header, httplib::ContentReceiver receiver) {
          if (!has_body) return true;
          finished = reader(std::move(header), std::move(receiver));
          return finished;
        });
    handler(req, res, once);
    if (!finished) BufferedServer::close_after_response(res);  // the rest would read as a request
  };
  switch (method) {
    case Method::post: s.Post(pattern, std::move(tracked)); break;
    case Method::put: s.Put(pattern, std::move(tracked)); break;
    case Method::patch: s.Patch(pattern, std::move(tracked)); break;
    case Method::del: s.Delete(pattern, std::move(tracked)); break;
    default: spdlog::critical("http: streaming routes take a body; {} {} ignored", method_name(method), pattern);
  }
}

core::Result<int> HttpServer::bind() {
  // Last in each list: a body-method request no route matched gets its 404/405 (from the
  // error handler) without httplib reading its body into memory first.
  auto unmatched = [](const httplib::Request&, httplib::Response& res, const httplib::ContentReader&) {
    if (has_body_to_read()) BufferedServer::close_after_response(res);
    res.status = 404;
  };
  server_->Post(".*", unmatched);
  server_->Put(".*", unmatched);
  server_->Patch(".*", unmatched);
  server_->Delete(".*", unmatched);
  int port = options_.port;
  if (port == 0) {
    port = server_->bind_to_any_port(options_.host);
    if (port < 0) port = 0;
  } else if (!server_->bind_to_port(options_.host, port)) {
    port = 0;
  }
  if (port == 0) {
    return core::make_error(core::Errc::unavailable, "cannot listen on " + options_.host + ":" +
                                                         std::to_string(options_.port) +
                                                         " (address in use, or not an address of this host)");
  }
  if (listen_fd_ >= 0) ::listen(listen_fd_, kListenBacklog);  // Linux: re-listen raises the backlog
  return port;
}

void mark_relayed_response() { is_relayed = true; }

const std::string& HttpServer::current_request_id() { return current_request_id_value; }

void HttpServer::run() {
  {
    std::lock_guard<std::mutex> lock(run_mu_);
    if (stopping_.load()) return;  // stop() came first: never start accepting
    running_ = true;
  }
  server_->listen_after_bind();
  std::lock_guard<std::mutex> lock(run_mu_);
  running_ = false;
}

void HttpServer::stop() {
  bool started = false;
  {
    std::lock_guard<std::mutex> lock(run_mu_);
    stopping_.store(true);
    started = running_;
  }
  // httplib's stop() does nothing until its accept loop has marked itself running, so a
  // stop that lands between run()'s start and that moment would be lost and run() would
  // never return (a SIGTERM just after start did this). Wait for the mark (it is set
  // first thing in the loop), or for run() to have ended.
  if (started) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!server_->is_running() && std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(run_mu_);
        if (!running_) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  server_->stop();
  server_->end_idle_connections();
}

SseOptions HttpServer::sse_options(bool ends_at_terminal) const {
  SseOptions o;
  o.keepalive = options_.sse_keepalive;
  o.stopping = &stopping_;
  o.ends_at_terminal = ends_at_terminal;
  o.counters = &sse_counters_;
  return o;
}

}  // namespace execd::http
