#include "http/client.hpp"

#include <charconv>

#include "http/upstream_connection.hpp"

namespace execd::http {

namespace {

bool has_header(const ClientHeaders& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return true;
  }
  return false;
}

}  // namespace

core::Result<ClientEndpoint> ClientEndpoint::parse(std::string_view text) {
  ClientEndpoint ep;
  if (text.rfind("unix://", 0) == 0) {
    ep.unix_path = std::string(text.substr(7));
    if (ep.unix_path.empty() || ep.unix_path.front() != '/') {
      return core::make_error(core::Errc::invalid_argument, "a unix endpoint needs an absolute path: " + std::string(text));
    }
    return ep;
  }
  if (text.rfind("http://", 0) == 0) text.remove_prefix(7);
  if (const auto slash = text.find('/'); slash != std::string_view::npos) text = text.substr(0, slash);
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return core::make_error(core::Errc::invalid_argument, "an endpoint needs host:port: " + std::string(text));
  }
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const auto port_text = text.substr(colon + 1);
  int port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535) {
    return core::make_error(core::Errc::invalid_argument, "bad port in endpoint: " + std::string(text));
  }
  ep.host = std::string(host);
  ep.port = port;
  return ep;
}

std::string ClientResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return {};
}

core::Result<ClientResponse> send_request(const ClientEndpoint& endpoint, const ClientRequest& request) {
  const auto deadline = UpstreamConnection::Clock::now() + request.timeout;
  auto conn = UpstreamConnection::open(endpoint, deadline);
  if (!conn) return conn.error();

  std::string head = request.method + " " + request.target + " HTTP/1.1\r\n";
  if (!has_header(request.headers, "Host")) {
    head += "Host: " + (endpoint.unix_path.empty() ? endpoint.host + ":" + std::to_string(endpoint.port) : std::string("localhost")) + "\r\n";
  }
  if (!has_header(request.headers, "Content-Length") &&
      (!request.body.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH")) {
    head += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
  }
  for (const auto& [k, v] : request.headers) head += k + ": " + v + "\r\n";
  head += "Connection: close\r\n\r\n";
  if (auto sent = conn->send(head, deadline); !sent) return sent.error();
  if (auto sent = conn->send(request.body, deadline); !sent) return sent.error();

  auto response_head = conn->read_head(request.method, deadline);
  if (!response_head) return response_head.error();
  ClientResponse res;
  res.status = response_head->status;
  res.headers = std::move(response_head->headers);
  if (conn->framing() == BodyFraming::length && conn->remaining() > request.max_response_bytes) {
    return conn->fail("response body over the limit");
  }
  char piece[16384];
  for (;;) {
    auto n = conn->read_body(piece, sizeof piece, deadline);
    if (!n) return n.error();
    if (*n == 0) return res;
    if (res.body.size() + *n > request.max_response_bytes) return conn->fail("response body over the limit");
    res.body.append(piece, *n);
  }
}

}  // namespace execd::http
