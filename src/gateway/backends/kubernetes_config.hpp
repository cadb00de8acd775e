#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "http/tls_client.hpp"

namespace execd::gateway {

/// How to reach and authenticate to one Kubernetes API server: what a kubeconfig's
/// current context or a pod's service account says. Plain data; the API client builds
/// its TLS context and headers from it.
struct KubeApiConfig {
  std::string host;  ///< the API server's address (name or IP)
  int port = 443;
  std::string tls_server_name;  ///< name the certificate must carry; empty: host
  http::TlsOptions tls;         ///< CA (file or PEM) and an optional client certificate
  std::string token;            ///< a static bearer token (kubeconfig `token`)
  /// A token file, re-read before each request: a service account's projected token is
  /// rotated by the kubelet (kubeconfig `tokenFile`, in-cluster token).
  std::string token_file;
  std::string namespace_name = "default";  ///< the context's namespace, or the pod's own
  std::string source;                      ///< for logs: "kubeconfig PATH (context NAME)" or "in-cluster"
};

/// "https://host", "https://host:6443", "https://[::1]:6443" into host and port. Plain
/// http is refused: the bearer token would cross the network in clear.
core::Result<void> parse_server_url(std::string_view url, KubeApiConfig& out);

/// A kubeconfig (YAML or JSON) into the current context's server, CA, credentials and
/// namespace. `dir` is the kubeconfig's directory: relative file paths in it are relative
/// to that. invalid_argument naming what is missing or unsupported (insecure-skip-tls-verify,
/// exec and auth-provider plugins, basic auth), quoting the context, cluster or user.
core::Result<KubeApiConfig> parse_kubeconfig(std::string_view text, const std::string& dir);

/// Reads and parses the kubeconfig file at `path`.
core::Result<KubeApiConfig> load_kubeconfig(const std::string& path);

/// The in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT
/// from `env`, the service account's token, CA and namespace from `account_dir`
/// (/var/run/secrets/kubernetes.io/serviceaccount). unavailable naming what is missing.
core::Result<KubeApiConfig> in_cluster_config(const std::map<std::string, std::string>& env,
                                              const std::string& account_dir);

/// The first YAML document of `text` (JSON is YAML too) as JSON, every scalar a string
/// (libyaml; a kubeconfig, a pod template). invalid_argument with the line at fault.
core::Result<nlohmann::json> parse_yaml_document(std::string_view text);

/// RFC 4648 base64 (kubeconfig `*-data` fields); invalid_argument on anything else.
core::Result<std::string> decode_base64(std::string_view text);

}  // namespace execd::gateway
