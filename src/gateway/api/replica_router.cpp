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
  // Twice at most: an owner that died since its last probe refuses the connection (the
  // request was not sent), and the second look probes it, finds it gone and adopts.
  for (int attempt = 0;; ++attempt) {
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
    const std::string url = "http://" + (*owner)->host + ":" + std::to_string((*owner)->port);
    core::Error refused;
    if (forward_to(**owner, req, res, refused)) return true;
    service_->forget_replica(url);
    if (attempt == 1) {
      mark(res);
      http::write_error(res, refused);
      return true;
    }
  }
}

bool ReplicaRouter::forward_to(const http::ClientEndpoint& owner, const httplib::Request& req, httplib::Response& res,
                               core::Error& refused) const {
  const std::string id = req.matches.size() > 1 ? std::string(req.matches[1]) : std::string();
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
  auto answer = http::send_request(owner, up);
  if (!answer) {
    const core::Error e = core::make_error(core::Errc::bad_gateway, "sandbox " + id + ": its replica at " + owner.host +
                                                                        ":" + std::to_string(owner.port) +
                                                                        " did not answer: " + answer.error().message);
    if (answer.error().message.find("connect") != std::string::npos) {
      refused = e;  // never sent: the caller looks again
      return false;
    }
    // It may have been served: the client decides whether to retry.
    mark(res);
    http::write_error(res, e);
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
