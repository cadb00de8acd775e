// Kubeconfig and in-cluster configuration parsing (pure: text and files in a temp dir).
#include "gateway/backends/kubernetes_config.hpp"

#include <doctest/doctest.h>

#include "support/temp_dir.hpp"

using namespace execd;
using namespace execd::gateway;

namespace {

// base64 of "-----BEGIN CERTIFICATE-----\nX\n" and of "tok-file" are computed by the test
// itself through decode_base64's inverse being trivial to check on fixed strings.
constexpr const char* kKubeconfig = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: prod
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority: /etc/prod-ca.crt
- name: kind
  cluster:
    server: https://127.0.0.1:41234
    certificate-authority-data: aGVsbG8gY2E=
    tls-server-name: kubernetes
contexts:
- name: dev
  context:
    cluster: kind
    user: admin
    namespace: sandboxes
- name: other
  context:
    cluster: prod
    user: robot
users:
- name: admin
  user:
    token: abc.def
- name: robot
  user:
    exec:
      command: aws
)";

}  // namespace

TEST_CASE("kubeconfig: the current context's server, CA data, token and namespace") {
  auto c = parse_kubeconfig(kKubeconfig, "/home/u/.kube");
  REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
  CHECK(c->host == "127.0.0.1");
  CHECK(c->port == 41234);
  CHECK(c->tls.ca_pem == "hello ca");
  CHECK(c->tls.ca_file.empty());
  CHECK(c->tls_server_name == "kubernetes");
  CHECK(c->token == "abc.def");
  CHECK(c->namespace_name == "sandboxes");
}

TEST_CASE("kubeconfig: relative files are relative to the kubeconfig; JSON works; client certificates") {
  test::TempDir dir;
  dir.write("cert.pem", "CERT");
  dir.write("key.pem", "KEY");
  const std::string text = R"({"current-context":"c","contexts":[{"name":"c","context":{"cluster":"k","user":"u"}}],
    "clusters":[{"name":"k","cluster":{"server":"https://[fd00::1]","certificate-authority":"ca.crt"}}],
    "users":[{"name":"u","user":{"client-certificate":"cert.pem","client-key":"key.pem","tokenFile":"tok"}}]})";
  auto c = parse_kubeconfig(text, dir.str());
  REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
  CHECK(c->host == "fd00::1");
  CHECK(c->port == 443);
  CHECK(c->tls.ca_file == dir.str() + "/ca.crt");
  CHECK(c->tls.cert_pem == "CERT");
  CHECK(c->tls.key_pem == "KEY");
  CHECK(c->token_file == dir.str() + "/tok");
  CHECK(c->namespace_name == "default");
}

TEST_CASE("kubeconfig: what the gateway cannot or will not use is refused by name") {
  auto refused = [](const std::string& text) {
    auto c = parse_kubeconfig(text, "/x");
    REQUIRE_FALSE(c);
    CHECK(c.error().code == core::Errc::invalid_argument);
    return c.error().message;
  };
  std::string exec_user = kKubeconfig;
  exec_user.replace(exec_user.find("current-context: dev"), 20, "current-context: other");
  CHECK(refused(exec_user).find("exec plugin") != std::string::npos);
  CHECK(refused("current-context: nope\ncontexts: []\n").find("'nope' is not defined") != std::string::npos);
  CHECK(refused("kind: Config\n").find("no current-context") != std::string::npos);
  CHECK(refused("[unclosed").find("not valid YAML") != std::string::npos);
  const std::string base =
      "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\nusers:\n- name: u\n  user: {token: "
      "t}\n";
  CHECK(refused(base + "clusters:\n- name: k\n  cluster: {server: 'https://h', insecure-skip-tls-verify: true}\n")
            .find("insecure-skip-tls-verify") != std::string::npos);
  CHECK(refused(base + "clusters:\n- name: k\n  cluster: {server: 'http://h:8080', certificate-authority: /ca}\n")
            .find("https://") != std::string::npos);
  CHECK(refused(base + "clusters:\n- name: k\n  cluster: {server: 'https://h'}\n").find("certificate-authority") !=
        std::string::npos);
  CHECK(refused(base + "clusters:\n- name: k\n  cluster: {server: 'https://h:0', certificate-authority: /ca}\n")
            .find("bad port") != std::string::npos);
}

TEST_CASE("kubeconfig: in-cluster service account") {
  test::TempDir dir;
  dir.write("token", "jwt\n");
  dir.write("ca.crt", "CA");
  dir.write("namespace", "execd\n");
  auto c = in_cluster_config({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}, dir.str());
  REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
  CHECK(c->host == "10.96.0.1");
  CHECK(c->port == 443);
  CHECK(c->token_file == dir.str() + "/token");
  CHECK(c->tls.ca_file == dir.str() + "/ca.crt");
  CHECK(c->namespace_name == "execd");
  auto outside = in_cluster_config({}, dir.str());
  REQUIRE_FALSE(outside);
  CHECK(outside.error().message.find("KUBERNETES_SERVICE_HOST") != std::string::npos);
  test::TempDir empty;
  auto no_token =
      in_cluster_config({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}, empty.str());
  REQUIRE_FALSE(no_token);
  CHECK(no_token.error().message.find("token") != std::string::npos);
}

TEST_CASE("kubeconfig: base64 and YAML scalar typing") {
  CHECK(decode_base64("aGVsbG8gY2E=").value() == "hello ca");
  CHECK(decode_base64("YQ==").value() == "a");
  CHECK(decode_base64("YWI=\n").value() == "ab");
  CHECK_FALSE(decode_base64("a*b"));
  CHECK_FALSE(decode_base64("YQ=a"));
  auto doc = parse_yaml_document("a: 1\nb: '1'\nc: true\nd: ~\ne: 2.5\nf: text\ng: [x, 3]\n");
  REQUIRE(doc);
  CHECK((*doc)["a"] == 1);
  CHECK((*doc)["b"] == "1");
  CHECK((*doc)["c"] == true);
  CHECK((*doc)["d"].is_null());
  CHECK((*doc)["e"] == 2.5);
  CHECK((*doc)["f"] == "text");
  CHECK((*doc)["g"][1] == 3);
}
