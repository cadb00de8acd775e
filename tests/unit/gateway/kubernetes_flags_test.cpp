// execd-gateway's Kubernetes flags: defaults, values, environment fallbacks and refusals.
#include <doctest/doctest.h>

#include "gateway/gateway_config.hpp"

using namespace execd::gateway;

TEST_CASE("kubernetes flags: defaults, values and environment fallbacks") {
  auto d = parse_gateway_config({}, {});
  REQUIRE(d.ok());
  CHECK(d->kubeconfig.empty());
  CHECK(d->k8s_bundle_image == "execd-bundle:latest");
  CHECK(d->k8s_run_as_user == 1000);
  CHECK(d->k8s_max_cpu_pct == 80);
  CHECK(d->k8s_max_memory_pct == 80);
  CHECK(d->k8s_max_pods_pct == 90);
  CHECK(d->k8s_ready_timeout == std::chrono::minutes(2));

  auto c = parse_gateway_config({"--backend",          "kubernetes", "--kubeconfig",         "/k/config",
                                 "--k8s-namespace",    "sbx",        "--k8s-instance",       "gw",
                                 "--k8s-bundle-image", "r/b:1",      "--k8s-runtime-class",  "gvisor",
                                 "--k8s-pod-template", "/t.json",    "--k8s-run-as-user",    "0",
                                 "--k8s-max-cpu-pct",  "50",         "--k8s-max-memory-pct", "60",
                                 "--k8s-max-pods-pct", "100",        "--k8s-ready-timeout",  "90s"},
                                {});
  REQUIRE(c.ok());
  CHECK(c->backend == "kubernetes");
  CHECK(c->kubeconfig == "/k/config");
  CHECK(c->k8s_namespace == "sbx");
  CHECK(c->k8s_instance == "gw");
  CHECK(c->k8s_bundle_image == "r/b:1");
  CHECK(c->k8s_runtime_class == "gvisor");
  CHECK(c->k8s_pod_template == "/t.json");
  CHECK(c->k8s_run_as_user == 0);
  CHECK(c->k8s_max_cpu_pct == 50);
  CHECK(c->k8s_max_memory_pct == 60);
  CHECK(c->k8s_max_pods_pct == 100);
  CHECK(c->k8s_ready_timeout == std::chrono::seconds(90));

  auto env = parse_gateway_config(
      {},
      {{"KUBECONFIG", "/e/config"}, {"EXECD_GATEWAY_K8S_NAMESPACE", "ns2"}, {"EXECD_GATEWAY_K8S_MAX_PODS_PCT", "75"}});
  REQUIRE(env.ok());
  CHECK(env->kubeconfig == "/e/config");
  CHECK(env->k8s_namespace == "ns2");
  CHECK(env->k8s_max_pods_pct == 75);
}

TEST_CASE("kubernetes flags: bad values are refused naming the flag") {
  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{{"--k8s-max-cpu-pct", "0"},
                                                                                    {"--k8s-max-memory-pct", "101"},
                                                                                    {"--k8s-max-pods-pct", "lots"},
                                                                                    {"--k8s-run-as-user", "-1"},
                                                                                    {"--k8s-ready-timeout", "soon"}}) {
    auto r = parse_gateway_config({flag, value}, {});
    REQUIRE_FALSE(r.ok());
    CHECK_MESSAGE(r.error().message.find(flag) != std::string::npos, r.error().message);
  }
  CHECK(gateway_config_help().find("--kubeconfig PATH") != std::string::npos);
}
