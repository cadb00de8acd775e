#include "k8s/api_standin.hpp"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/id.hpp"
#include "http/client.hpp"
#include "http/tls_client.hpp"

namespace execd::test {
namespace {

void run(const std::string& cmd) {
  const int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  REQUIRE_MESSAGE(rc == 0, "command failed: " << cmd);
}

void make_ca(const std::string& dir, const std::string& name) {
  run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=" + name +
      " -keyout " + dir + "/" + name + ".key -out " + dir + "/" + name + ".crt");
}

}  // namespace

ApiStandIn::ApiStandIn(std::string source_root, std::string execd_bin, std::vector<std::string> extra_args)
    : root_(std::move(source_root)) {
  const std::string d = dir_.str();
  REQUIRE_MESSAGE(std::filesystem::exists(root_ + "/.k8s-schema/node_modules/kubernetes-models"),
                  "kubernetes-models is not installed: run make k8s-schema");
  make_ca(d, "ca");
  run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=kube-apiserver -keyout " + d +
      "/server.key -out " + d + "/server.csr");
  dir_.write("san.ext", "subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\n");
  run("openssl x509 -req -in " + d + "/server.csr -CA " + d + "/ca.crt -CAkey " + d +
      "/ca.key -CAcreateserial -days 2 -extfile " + d + "/san.ext -out " + d + "/server.crt");
  token_ = "standin-" + core::random_hex(16);
  std::vector<std::string> args = {"python3",     root_ + "/tests/k8s/apiserver_standin.py",
                                   "--cert",      d + "/server.crt",
                                   "--key",       d + "/server.key",
                                   "--token",     token_,
                                   "--port-file", d + "/port",
                                   "--execd",     execd_bin,
                                   "--validator", root_ + "/tests/k8s/validate_objects.mjs",
                                   "--models",    root_ + "/.k8s-schema"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline && port_ == 0) {
    std::ifstream in(d + "/port");
    if (!(in >> port_)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE_MESSAGE(port_ > 0, "the API stand-in did not start");
}

ApiStandIn::~ApiStandIn() {
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

std::string ApiStandIn::kubeconfig(const std::string& token, const std::string& ca_file) const {
  const std::string ca = ca_file.empty() ? dir_.str() + "/ca.crt" : ca_file;
  const std::string text =
      "apiVersion: v1\nkind: Config\ncurrent-context: standin\nclusters:\n- name: standin\n  cluster:\n"
      "    server: https://127.0.0.1:" +
      std::to_string(port_) + "\n    certificate-authority: " + ca +
      "\ncontexts:\n- name: standin\n  context: {cluster: standin, user: gw, namespace: sandboxes}\n"
      "users:\n- name: gw\n  user:\n    token: \"" +
      token + "\"\n";
  return dir_.write("kubeconfig-" + std::to_string(++kubeconfigs_), text).string();
}

std::string ApiStandIn::other_ca() const {
  make_ca(dir_.str(), "other");
  return dir_.str() + "/other.crt";
}

nlohmann::json ApiStandIn::get(const std::string& path, int* status) const {
  auto ctx = http::TlsContext::create({.ca_file = dir_.str() + "/ca.crt"});
  REQUIRE(ctx);
  http::ClientEndpoint ep;
  ep.host = "127.0.0.1";
  ep.port = port_;
  ep.tls = *ctx;
  http::ClientRequest req;
  req.target = path;
  req.headers = {{"Authorization", "Bearer " + token_}};
  auto res = http::send_request(ep, req);
  REQUIRE_MESSAGE(res, (res ? "" : res.error().message));
  if (status != nullptr) *status = res->status;
  return nlohmann::json::parse(res->body, nullptr, false);
}

nlohmann::json ApiStandIn::stats() const {
  return get("/standin/stats");
}

}  // namespace execd::test
