#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace execd::test {

/// The Kubernetes API-server STAND-IN (tests/k8s/apiserver_standin.py, not Kubernetes)
/// on 127.0.0.1, serving HTTPS with a certificate signed by a CA made for it with
/// `openssl req`, checking a random bearer token, validating what it receives with
/// kubernetes-models, and starting `execd_bin` as each pod. The constructor waits for it
/// (20 s; the test fails loudly otherwise); the destructor stops it and its execds.
class ApiStandIn {
 public:
  ApiStandIn(std::string source_root, std::string execd_bin, std::vector<std::string> extra_args = {});
  ~ApiStandIn();
  ApiStandIn(const ApiStandIn&) = delete;
  ApiStandIn& operator=(const ApiStandIn&) = delete;

  /// A kubeconfig file naming this stand-in (namespace `sandboxes`), its CA (or
  /// `ca_file`) and `token`.
  [[nodiscard]] std::string kubeconfig(const std::string& token, const std::string& ca_file = "") const;
  [[nodiscard]] const std::string& token() const { return token_; }
  [[nodiscard]] int port() const { return port_; }
  /// A CA that did not sign the stand-in's certificate (PEM file).
  [[nodiscard]] std::string other_ca() const;
  /// GET /standin/stats: {"validated": N, "invalid": [...], "requests": N}.
  [[nodiscard]] nlohmann::json stats() const;
  /// One request to the API as the gateway would make it (bearer token); the JSON answer.
  [[nodiscard]] nlohmann::json get(const std::string& path, int* status = nullptr) const;

 private:
  TempDir dir_;
  std::string root_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string token_;
  mutable int kubeconfigs_ = 0;
};

}  // namespace execd::test
