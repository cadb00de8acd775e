#pragma once

#include <httplib.h>

#include <memory>
#include <optional>
#include <string>

#include "core/result.hpp"
#include "http/client.hpp"

namespace execd::gateway {
class SandboxService;
}

namespace execd::gateway::api {

/// Sends a request for a sandbox to the replica that owns it. Replicas behind one
/// balancer share the engine, not a table or a lock: each serves the sandboxes it
/// created (or adopted), and a request that reaches another replica (nginx's hash
/// differs from the creator, a scale change) is forwarded to the owner the engine's
/// labels name (SandboxService::owner_of). An owner that does not answer is presumed
/// dead and the sandbox is adopted here (SandboxService::adopt), so a replica's death
/// loses no sandbox. A forwarded request carries X-Execd-Forwarded-By and is never
/// forwarded again. Answers say who served them in X-Gateway-Replica. Without
/// --replica-id every call is a no-op that serves here. Thread-safe.
class ReplicaRouter {
 public:
  ReplicaRouter(std::shared_ptr<SandboxService> service, std::string replica_id, std::string api_key);

  static constexpr const char* kReplicaHeader = "X-Gateway-Replica";
  static constexpr const char* kForwardedHeader = "X-Execd-Forwarded-By";

  /// Where a request for `id` is served: nullopt here (after an adoption, if that was
  /// needed), or the owner's endpoint. An error when the owner cannot be had (a request
  /// already forwarded once that meets yet another owner).
  core::Result<std::optional<http::ClientEndpoint>> owner_endpoint(const std::string& id,
                                                                   const httplib::Request& req) const;

  /// For a lifecycle route: when another replica owns `id`, forwards the request there
  /// (bodies are small JSON, sent whole) and copies its answer into `res`: true. False
  /// when this replica serves it (X-Gateway-Replica set). An error answer was written
  /// when it could not decide (true as well).
  bool forward_if_elsewhere(const std::string& id, const httplib::Request& req, httplib::Response& res) const;

  /// X-Gateway-Replica on an answer served here.
  void mark(httplib::Response& res) const;

  [[nodiscard]] const std::string& replica_id() const { return replica_id_; }
  [[nodiscard]] const std::string& api_key() const { return api_key_; }

 private:
  /// One exchange with the owner, its answer copied into `res`: true. False, with
  /// `refused` set, when the connection was refused (nothing was sent).
  bool forward_to(const http::ClientEndpoint& owner, const httplib::Request& req, httplib::Response& res,
                  core::Error& refused) const;

  std::shared_ptr<SandboxService> service_;
  std::string replica_id_;
  std::string api_key_;
};

}  // namespace execd::gateway::api
