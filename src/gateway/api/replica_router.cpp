#include "gateway/api/replica_router.hpp"

#include <spdlog/spdlog.h>

#include "gateway/sandbox_service.hpp"
#include "http/http_server.hpp"
#include "http/json_io.hpp"

namespace execd::gateway::api {

ReplicaRouter::ReplicaRouter(std::shared_ptr<SandboxService> service, std::string replica_id, std::string api_key)
    : service_(std::move(service)), replica_id_(std::move(replica_id)), api_key_(std::move(api_key)) {}

void ReplicaRouter::mark(httplib::Response& res) const {
  if (!replica_id_.empty()) res.set_header(kReplicaHeader, replica_id_);
}

core::Result<std::optional<http::ClientEndpoint>> ReplicaRouter::owner_endpoint(const std::string& id,
                                                                               const httplib::Request& req) const {
  using Found = std::optional<http::ClientEndpoint>;
  if (replica_id_.empty()) return Found();
  auto owner = service_->owner_of(id);
  if (!owner) return owner.error();
  if (owner->is_here) return Found();
  if (req.has_header(kForwardedHeader)) {
    // Forwarded here by a replica that read other labels: the owner moved meanwhile.
    return core::make_error(core::Errc::bad_gateway, "sandbox " + id + " is served by replica " + owner->replica_id +
                                                         " now; this request was already forwarded once (retry it)");
  }
  if (!service_->is_replica_reachable(owner->url)) {
    spdlog::warn("sandbox {}: its replica {} ({}) does not answer; adopting it", id, owner->replica_id, owner->url);
    auto adopted = service_->adopt(id, "replica " + owner->replica_id + " at " + owner->url + " did not answer");
    if (!adopted) return adopted.error();
    if (adopted->is_here) return Found();
    owner = adopted;  // another replica adopted it first
  }
  auto endpoint = http::ClientEndpoint::parse(owner->url);
  if (!endpoint) {
    return core::make_error(core::Errc::bad_gateway, "sandbox " + id + " is served by replica " + owner->replica_id +
                                                         " whose advertised URL '" + owner->url + "' is not usable");
  }
  return Found(std::move(*endpoint));
}

bool ReplicaRouter::forward_if_elsewhere(const std::string& id, const httplib::Request& req,
                                         httplib::Response& res) const {
  auto owner = owner_endpoint(id, req);
  if (!owner) {
    mark(res);
    http::write_error(res, owner.error());
    return true;
  }
  if (!*owner) {
    mark(res);
    return false;
  }
  http::ClientRequest up;
  up.method = req.method;
  up.target = req.target;
  up.body = req.body;
  up.timeout = std::chrono::seconds(30);
  up.headers = {{kForwardedHeader, replica_id_}, {"X-Request-ID", http::HttpServer::current_request_id()}};
  if (!api_key_.empty()) up.headers.emplace_back("OPEN-SANDBOX-API-KEY", api_key_);
  for (const char* name : {"Content-Type", "Host"}) {
    if (req.has_header(name)) up.headers.emplace_back(name, req.get_header_value(name));
  }
  auto answer = http::send_request(**owner, up);
  if (!answer) {
    // It answered the probe a moment ago; now it does not: the client may retry, and
    // the next request adopts the sandbox if the owner stays away.
    mark(res);
    http::write_error(res, core::make_error(core::Errc::bad_gateway, "sandbox " + id + ": its replica at " +
                                                                         (*owner)->host + ":" + std::to_string((*owner)->port) +
                                                                         " did not answer: " + answer.error().message));
    return true;
  }
  res.status = answer->status;
  for (const char* name : {kReplicaHeader, "Location", "Allow"}) {
    const std::string v = answer->header(name);
    if (!v.empty()) res.set_header(name, v);
  }
  const std::string type = answer->header("Content-Type");
  if (!answer->body.empty() || !type.empty()) res.set_content(answer->body, type.empty() ? "application/json" : type);
  return true;
}

}  // namespace execd::gateway::api
