#include "gateway/backends/kubernetes_api.hpp"

#include <fstream>
#include <sstream>

#include "http/tls_client.hpp"
#include "http/upstream_connection.hpp"

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;
using nlohmann::json;

constexpr size_t kMaxEventBytes = 16u << 20;  // one watch event (a pod is a few KiB)

}  // namespace

core::Result<WatchEvent> parse_watch_event(std::string_view line) {
  const json j = json::parse(line, nullptr, false);
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string() || !j.contains("object") ||
      !j["object"].is_object()) {
    return make_error(Errc::invalid_argument, "not a watch event: " + std::string(line.substr(0, 120)));
  }
  WatchEvent e{j["type"].get<std::string>(), j["object"]};
  if (e.type != "ADDED" && e.type != "MODIFIED" && e.type != "DELETED" && e.type != "BOOKMARK" && e.type != "ERROR") {
    return make_error(Errc::invalid_argument, "unknown watch event type '" + e.type + "'");
  }
  return e;
}

core::Error api_error(int status, const std::string& body, const std::string& what) {
  const json j = json::parse(body, nullptr, false);
  std::string message = j.is_object() && j.contains("message") && j["message"].is_string()
                            ? j["message"].get<std::string>()
                            : body.substr(0, 200);
  message = what + ": " + message + " (HTTP " + std::to_string(status) + ")";
  switch (status) {
    case 400:
    case 422:
      return make_error(Errc::invalid_argument, message);
    case 401:
    case 403:
      return make_error(Errc::permission_denied, message);
    case 404:
      return make_error(Errc::not_found, message);
    case 409:
    case 410:
      return make_error(Errc::conflict, message);
    default:
      return make_error(Errc::unavailable, message);
  }
}

core::Result<KubernetesApi> KubernetesApi::open(KubeApiConfig config, std::chrono::milliseconds timeout) {
  auto tls = http::TlsContext::create(config.tls);
  if (!tls) return make_error(Errc::invalid_argument, "kubernetes API (" + config.source + "): " + tls.error().message);
  http::ClientEndpoint ep;
  ep.host = config.host;
  ep.port = config.port;
  ep.tls = std::move(*tls);
  ep.tls_server_name = config.tls_server_name;
  return KubernetesApi(std::move(config), std::move(ep), timeout);
}

core::Result<http::ClientHeaders> KubernetesApi::auth_headers() const {
  http::ClientHeaders h{{"Accept", "application/json"}};
  std::string token = config_.token;
  if (!config_.token_file.empty()) {
    std::ifstream in(config_.token_file);
    if (!in) return make_error(Errc::unavailable, "kubernetes API: cannot read the token file " + config_.token_file);
    std::ostringstream s;
    s << in.rdbuf();
    token = s.str();
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  }
  if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
  return h;
}

core::Result<json> KubernetesApi::call(const std::string& method, const std::string& path, const json& body,
                                       const std::string& what, const std::string& content_type) const {
  auto headers = auth_headers();
  if (!headers) return headers.error();
  http::ClientRequest req;
  req.method = method;
  req.target = path;
  req.headers = std::move(*headers);
  req.timeout = timeout_;
  if (!body.is_null()) {
    req.body = body.dump();
    req.headers.emplace_back("Content-Type", content_type);
  }
  auto res = http::send_request(endpoint_, req);
  if (!res) return make_error(Errc::unavailable, what + ": " + res.error().message);
  if (res->status < 200 || res->status > 299) return api_error(res->status, res->body, what);
  if (res->body.empty()) return json::object();
  json out = json::parse(res->body, nullptr, false);
  if (out.is_discarded())
    return make_error(Errc::unavailable, what + ": the API server answered something that is not JSON");
  return out;
}

core::Result<bool> KubernetesApi::watch(const std::string& path, const std::function<bool(const WatchEvent&)>& on_event,
                                        std::chrono::steady_clock::time_point deadline) const {
  auto headers = auth_headers();
  if (!headers) return headers.error();
  auto conn = http::UpstreamConnection::open(endpoint_, deadline);
  if (!conn) return make_error(Errc::unavailable, "watch " + path + ": " + conn.error().message);
  std::string head =
      "GET " + path + " HTTP/1.1\r\nHost: " + endpoint_.host + ":" + std::to_string(endpoint_.port) + "\r\n";
  for (const auto& [k, v] : *headers) head += k + ": " + v + "\r\n";
  head += "Connection: close\r\n\r\n";
  if (auto sent = conn->send(head, deadline); !sent) return sent.error();
  auto response = conn->read_head("GET", deadline);
  if (!response) return response.error();
  std::string pending;
  char piece[16384];
  if (response->status != 200) {
    for (;;) {
      auto n = conn->read_body(piece, sizeof piece, deadline);
      if (!n || *n == 0 || pending.size() > 65536) break;
      pending.append(piece, *n);
    }
    return api_error(response->status, pending, "watch " + path);
  }
  // One JSON document per line (the API server's watch framing over chunked encoding).
  for (;;) {
    auto n = conn->read_body(piece, sizeof piece, deadline);
    if (!n) return make_error(Errc::unavailable, "watch " + path + ": " + n.error().message);
    if (*n == 0) return false;
    pending.append(piece, *n);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      const std::string_view line(pending.data() + start, nl - start);
      if (line.empty() || line == "\r") continue;
      auto event = parse_watch_event(line);
      if (!event) return make_error(Errc::unavailable, "watch " + path + ": " + event.error().message);
      if (!on_event(*event)) return true;
    }
    pending.erase(0, start);
    if (pending.size() > kMaxEventBytes)
      return make_error(Errc::unavailable, "watch " + path + ": an event over 16 MiB");
  }
}

}  // namespace execd::gateway
