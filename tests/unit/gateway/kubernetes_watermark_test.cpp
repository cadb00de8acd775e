// The watermark from the cluster's own numbers (node and pod lists, metrics), quantity
// arithmetic, watch event parsing and API error mapping: pure functions over JSON shaped
// as the API reference writes it.
#include "gateway/backends/kubernetes_watermark.hpp"

#include <doctest/doctest.h>

#include "gateway/backends/kubernetes_api.hpp"

using namespace execd;
using namespace execd::gateway;
using nlohmann::json;

namespace {

json node(const std::string& name, const std::string& cpu, const std::string& memory, const std::string& pods,
          bool ready = true, bool cordoned = false) {
  return {{"metadata", {{"name", name}}},
          {"spec", cordoned ? json{{"unschedulable", true}} : json::object()},
          {"status",
           {{"allocatable", {{"cpu", cpu}, {"memory", memory}, {"pods", pods}}},
            {"conditions",
             {{{"type", "MemoryPressure"}, {"status", "False"}},
              {{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}}}};
}

json pod(const std::string& node_name, const std::string& cpu, const std::string& memory,
         const std::string& phase = "Running") {
  return {{"spec",
           {{"nodeName", node_name},
            {"containers", {{{"name", "c"}, {"resources", {{"requests", {{"cpu", cpu}, {"memory", memory}}}}}}}}}},
          {"status", {{"phase", phase}}}};
}

}  // namespace

TEST_CASE("kubernetes watermark: quantities as the API writes them") {
  CHECK(parse_kube_quantity_millis("250m").value() == 250);
  CHECK(parse_kube_quantity_millis("2").value() == 2000);
  CHECK(parse_kube_quantity_millis("1Gi").value() == (1ull << 30) * 1000);
  CHECK(parse_kube_quantity_millis("123456789n").value() == 124);  // 0.123... cores, rounded up
  CHECK(parse_kube_quantity_millis("1500u").value() == 2);
  CHECK(parse_kube_quantity_millis("110").value() == 110000);
  CHECK_FALSE(parse_kube_quantity_millis("lots"));
  CHECK_FALSE(parse_kube_quantity_millis("n"));
}

TEST_CASE("kubernetes watermark: a pod's requests follow the scheduler's rule") {
  json p = {
      {"spec",
       {{"containers",
         {{{"resources", {{"requests", {{"cpu", "100m"}, {"memory", "64Mi"}}}}}},
          {{"resources", {{"limits", {{"cpu", "200m"}, {"memory", "128Mi"}}}}}}}},  // limits only: requests = limits
        {"initContainers", {{{"resources", {{"requests", {{"cpu", "1"}, {"memory", "32Mi"}}}}}}}},
        {"overhead", {{"cpu", "10m"}, {"memory", "1Mi"}}}}}};
  const PodAsk a = pod_requests(p);
  CHECK(a.cpu_millis == 1000 + 10);                        // the init container's 1 core beats 300m
  CHECK(a.memory_bytes == (192ull << 20) + (1ull << 20));  // the containers' 192Mi beats 32Mi
}

TEST_CASE(
    "kubernetes watermark: Ready schedulable nodes only; ended and unbound pods do not count; metrics folded in") {
  const json nodes = {
      {"items",
       {node("a", "4", "8Gi", "110"), node("b", "4", "8Gi", "110", false), node("c", "4", "8Gi", "110", true, true)}}};
  const json pods = {
      {"items",
       {pod("a", "1", "1Gi"), pod("a", "500m", "1Gi", "Succeeded"), pod("", "2", "1Gi"), pod("b", "2", "2Gi")}}};
  ClusterLoad load = compute_cluster_load(nodes, pods, nullptr);
  REQUIRE(load.nodes.size() == 1);
  CHECK(load.nodes_left_out == 2);
  CHECK_FALSE(load.has_metrics);
  CHECK(load.nodes[0].cpu_allocatable == 4000);
  CHECK(load.nodes[0].cpu_requested == 1000);
  CHECK(load.nodes[0].memory_requested == 1ull << 30);
  CHECK(load.nodes[0].pods == 1);
  const json metrics = {
      {"items", {{{"metadata", {{"name", "a"}}}, {"usage", {{"cpu", "3100000000n"}, {"memory", "2097152Ki"}}}}}}};
  load = compute_cluster_load(nodes, pods, metrics);
  CHECK(load.has_metrics);
  CHECK(load.nodes[0].cpu_load() == 3100);  // usage above requests counts
  CHECK(load.nodes[0].memory_load() == 2ull << 30);
  const std::string line = describe_load(load, PodAsk{500, 1ull << 29});
  CHECK(line.find("a: cpu req 1000m used 3100m of 4000m") != std::string::npos);
  CHECK(line.find("metrics used") != std::string::npos);
}

TEST_CASE("kubernetes watermark: room, and each threshold refusing with its numbers") {
  const json nodes = {{"items", {node("a", "4", "8Gi", "10"), node("b", "4", "8Gi", "10")}}};
  const json pods = {{"items", {pod("a", "3", "2Gi"), pod("b", "2", "2Gi")}}};
  const ClusterLoad load = compute_cluster_load(nodes, pods, nullptr);
  KubeThresholds t;  // 80 / 80 / 90
  CHECK(check_room(load, PodAsk{500, 1ull << 30}, t));
  auto cpu = check_room(load, PodAsk{1500, 1ull << 30}, t);  // 6.5 of 8 cores = 81%
  REQUIRE_FALSE(cpu);
  CHECK(cpu.error().code == core::Errc::unavailable);
  CHECK(cpu.error().message.find("cpu: 6500m of 8000m") != std::string::npos);
  auto mem = check_room(load, PodAsk{100, 9ull << 30}, t);
  REQUIRE_FALSE(mem);
  CHECK(mem.error().message.rfind("memory:", 0) == 0);
  KubeThresholds tight{100, 100, 10};
  auto pods_full = check_room(load, PodAsk{100, 1}, tight);
  REQUIRE_FALSE(pods_full);
  CHECK(pods_full.error().message.rfind("pods: 3 of 20", 0) == 0);
  // Enough in total, but no single node has 2.5 free cores.
  KubeThresholds loose{100, 100, 100};
  auto split = check_room(load, PodAsk{2500, 1}, loose);
  REQUIRE_FALSE(split);
  CHECK(split.error().message.find("no single node") != std::string::npos);
  auto none = check_room(compute_cluster_load(json{{"items", json::array()}}, pods, nullptr), PodAsk{}, t);
  REQUIRE_FALSE(none);
  CHECK(none.error().message.find("no Ready") != std::string::npos);
}

TEST_CASE("kubernetes api: watch events and error statuses") {
  auto e = parse_watch_event(R"({"type":"MODIFIED","object":{"kind":"Pod","metadata":{"name":"p"}}})");
  REQUIRE(e);
  CHECK(e->type == "MODIFIED");
  CHECK(e->object["metadata"]["name"] == "p");
  auto err = parse_watch_event(R"({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}})");
  REQUIRE(err);
  CHECK(err->object["code"] == 410);
  CHECK_FALSE(parse_watch_event(R"({"type":"RENAMED","object":{}})"));
  CHECK_FALSE(parse_watch_event(R"({"type":"ADDED"})"));
  CHECK_FALSE(parse_watch_event("not json"));

  const std::string status =
      R"({"kind":"Status","status":"Failure","message":"pods \"x\" already exists","reason":"AlreadyExists","code":409})";
  const core::Error c = api_error(409, status, "creating pod x");
  CHECK(c.code == core::Errc::conflict);
  CHECK(c.message == "creating pod x: pods \"x\" already exists (HTTP 409)");
  CHECK(api_error(404, "{}", "w").code == core::Errc::not_found);
  CHECK(api_error(422, "{}", "w").code == core::Errc::invalid_argument);
  CHECK(api_error(403, "{}", "w").code == core::Errc::permission_denied);
  CHECK(api_error(500, "oops", "w").code == core::Errc::unavailable);
}
