#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "gateway/backends/kubernetes_config.hpp"
#include "http/client.hpp"

namespace execd::gateway {

/// One event of a watch stream (meta/v1 WatchEvent): ADDED, MODIFIED, DELETED, BOOKMARK
/// or ERROR (then `object` is a Status).
struct WatchEvent {
  std::string type;
  nlohmann::json object;
};

/// One line of a watch response into a WatchEvent; invalid_argument when it is not one.
core::Result<WatchEvent> parse_watch_event(std::string_view line);

/// The error an API server answer means: its Status object's message, and a kind from the
/// HTTP status (404 not_found, 409 conflict, 400/422 invalid_argument, 401/403
/// permission_denied, 410 conflict (a watch's resourceVersion is too old), anything
/// else unavailable).
core::Error api_error(int status, const std::string& body, const std::string& what);

/// A client of the Kubernetes API over HTTPS (http::send_request with a TLS endpoint):
/// the server verified against the configured CA, a bearer token on every request (read
/// again from the token file each time, since service account tokens are rotated) or a
/// client certificate. Immutable after open(): any thread may call it.
class KubernetesApi {
 public:
  /// Builds the TLS context; no request is made.
  static core::Result<KubernetesApi> open(KubeApiConfig config, std::chrono::milliseconds timeout);

  [[nodiscard]] const KubeApiConfig& config() const { return config_; }

  /// One request; `body` is sent as JSON when not null (with `content_type`, e.g.
  /// application/merge-patch+json for a PATCH). A 2xx answer's JSON body, or api_error.
  core::Result<nlohmann::json> call(const std::string& method, const std::string& path, const nlohmann::json& body,
                                    const std::string& what,
                                    const std::string& content_type = "application/json") const;

  /// Streams `path` (a list URL with watch=1) and hands each event to `on_event` until it
  /// returns false (then true is returned), the server ends the stream (false), or the
  /// deadline passes (unavailable). Never polls: it waits on the connection.
  core::Result<bool> watch(const std::string& path, const std::function<bool(const WatchEvent&)>& on_event,
                           std::chrono::steady_clock::time_point deadline) const;

 private:
  KubernetesApi(KubeApiConfig config, http::ClientEndpoint endpoint, std::chrono::milliseconds timeout)
      : config_(std::move(config)), endpoint_(std::move(endpoint)), timeout_(timeout) {}
  core::Result<http::ClientHeaders> auth_headers() const;

  KubeApiConfig config_;
  http::ClientEndpoint endpoint_;
  std::chrono::milliseconds timeout_;
};

}  // namespace execd::gateway
