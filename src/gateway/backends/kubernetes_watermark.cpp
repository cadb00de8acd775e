#include "gateway/backends/kubernetes_watermark.hpp"

#include <algorithm>
#include <map>

#include "gateway/resource_quantity.hpp"

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;
using nlohmann::json;

uint64_t quantity_or_zero(const json& map, const char* key) {
  if (!map.is_object()) return 0;
  const auto it = map.find(key);
  if (it == map.end()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>() * 1000;
  if (!it->is_string()) return 0;
  auto q = parse_kube_quantity_millis(it->get<std::string>());
  return q ? *q : 0;
}

// Cores from thousandths stay thousandths (millicores); bytes and counts are whole units.
uint64_t units(uint64_t millis) {
  return (millis + 999) / 1000;
}

std::string mib(uint64_t bytes) {
  return std::to_string(bytes >> 20) + "Mi";
}

bool node_is_ready(const json& node) {
  const json status = node.value("status", json::object());
  if (const auto c = status.find("conditions"); c != status.end() && c->is_array()) {
    for (const auto& cond : *c) {
      if (cond.value("type", "") == "Ready") return cond.value("status", "") == "True";
    }
  }
  return false;
}

double pct(uint64_t part, uint64_t whole) {
  return whole == 0 ? 100.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

std::string fmt_pct(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", v);
  return buf;
}

}  // namespace

core::Result<uint64_t> parse_kube_quantity_millis(std::string_view text) {
  // metrics.k8s.io writes nano- and micro-units, which the request grammar has no need for.
  if (!text.empty() && (text.back() == 'n' || text.back() == 'u')) {
    const uint64_t divisor = text.back() == 'n' ? 1'000'000'000ull : 1'000'000ull;
    auto whole = parse_quantity_millis("quantity", text.substr(0, text.size() - 1));
    if (!whole) return whole.error();
    return (*whole + divisor - 1) / divisor;
  }
  return parse_quantity_millis("quantity", text);
}

PodAsk pod_requests(const json& pod) {
  const json spec = pod.value("spec", json::object());
  PodAsk sum;
  PodAsk init_max;
  auto requests_of = [](const json& container) {
    const json resources = container.value("resources", json::object());
    json requests = resources.value("requests", json::object());
    // A container with limits and no requests is given requests equal to its limits.
    const json limits = resources.value("limits", json::object());
    for (const char* k : {"cpu", "memory"}) {
      if (!requests.contains(k) && limits.contains(k)) requests[k] = limits[k];
    }
    return PodAsk{quantity_or_zero(requests, "cpu"), units(quantity_or_zero(requests, "memory"))};
  };
  if (const auto cs = spec.find("containers"); cs != spec.end() && cs->is_array()) {
    for (const auto& c : *cs) {
      const PodAsk a = requests_of(c);
      sum.cpu_millis += a.cpu_millis;
      sum.memory_bytes += a.memory_bytes;
    }
  }
  if (const auto cs = spec.find("initContainers"); cs != spec.end() && cs->is_array()) {
    for (const auto& c : *cs) {
      const PodAsk a = requests_of(c);
      init_max.cpu_millis = std::max(init_max.cpu_millis, a.cpu_millis);
      init_max.memory_bytes = std::max(init_max.memory_bytes, a.memory_bytes);
    }
  }
  PodAsk out{std::max(sum.cpu_millis, init_max.cpu_millis), std::max(sum.memory_bytes, init_max.memory_bytes)};
  const json overhead = spec.value("overhead", json::object());
  out.cpu_millis += quantity_or_zero(overhead, "cpu");
  out.memory_bytes += units(quantity_or_zero(overhead, "memory"));
  return out;
}

ClusterLoad compute_cluster_load(const json& nodes, const json& pods, const json& node_metrics) {
  ClusterLoad load;
  std::map<std::string, size_t> index;
  if (const auto items = nodes.find("items"); items != nodes.end() && items->is_array()) {
    for (const auto& node : *items) {
      const json spec = node.value("spec", json::object());
      if (!node_is_ready(node) || spec.value("unschedulable", false)) {
        ++load.nodes_left_out;
        continue;
      }
      const json alloc = node.value("status", json::object()).value("allocatable", json::object());
      NodeLoad n;
      n.name = node.value("metadata", json::object()).value("name", "");
      n.cpu_allocatable = quantity_or_zero(alloc, "cpu");
      n.memory_allocatable = units(quantity_or_zero(alloc, "memory"));
      n.pods_allocatable = units(quantity_or_zero(alloc, "pods"));
      index[n.name] = load.nodes.size();
      load.nodes.push_back(std::move(n));
    }
  }
  if (const auto items = pods.find("items"); items != pods.end() && items->is_array()) {
    for (const auto& pod : *items) {
      const std::string phase = pod.value("status", json::object()).value("phase", "");
      if (phase == "Succeeded" || phase == "Failed") continue;
      const auto it = index.find(pod.value("spec", json::object()).value("nodeName", ""));
      if (it == index.end()) continue;
      NodeLoad& n = load.nodes[it->second];
      const PodAsk a = pod_requests(pod);
      n.cpu_requested += a.cpu_millis;
      n.memory_requested += a.memory_bytes;
      ++n.pods;
    }
  }
  if (node_metrics.is_object()) {
    if (const auto items = node_metrics.find("items"); items != node_metrics.end() && items->is_array()) {
      for (const auto& m : *items) {
        const auto it = index.find(m.value("metadata", json::object()).value("name", ""));
        if (it == index.end()) continue;
        const json usage = m.value("usage", json::object());
        load.nodes[it->second].cpu_used = quantity_or_zero(usage, "cpu");
        load.nodes[it->second].memory_used = units(quantity_or_zero(usage, "memory"));
        load.has_metrics = true;
      }
    }
  }
  return load;
}

core::Result<void> check_room(const ClusterLoad& load, const PodAsk& ask, const KubeThresholds& t) {
  if (load.nodes.empty()) {
    return make_error(Errc::unavailable,
                      "no Ready, schedulable node (" + std::to_string(load.nodes_left_out) + " left out)");
  }
  uint64_t cpu_alloc = 0, cpu_load = 0, mem_alloc = 0, mem_load = 0, pods_alloc = 0, pods = 0;
  bool fits_somewhere = false;
  for (const auto& n : load.nodes) {
    cpu_alloc += n.cpu_allocatable;
    cpu_load += n.cpu_load();
    mem_alloc += n.memory_allocatable;
    mem_load += n.memory_load();
    pods_alloc += n.pods_allocatable;
    pods += n.pods;
    // The scheduler places by requests; usage only makes a node look fuller here.
    fits_somewhere = fits_somewhere || (n.cpu_requested + ask.cpu_millis <= n.cpu_allocatable &&
                                        n.memory_requested + ask.memory_bytes <= n.memory_allocatable &&
                                        n.pods + 1 <= n.pods_allocatable);
  }
  const double cpu_after = pct(cpu_load + ask.cpu_millis, cpu_alloc);
  if (cpu_after > t.cpu_pct) {
    return make_error(Errc::unavailable, "cpu: " + std::to_string(cpu_load + ask.cpu_millis) + "m of " +
                                             std::to_string(cpu_alloc) + "m allocatable with this sandbox (" +
                                             fmt_pct(cpu_after) + ", watermark " + fmt_pct(t.cpu_pct) + ")");
  }
  const double mem_after = pct(mem_load + ask.memory_bytes, mem_alloc);
  if (mem_after > t.memory_pct) {
    return make_error(Errc::unavailable, "memory: " + mib(mem_load + ask.memory_bytes) + " of " + mib(mem_alloc) +
                                             " allocatable with this sandbox (" + fmt_pct(mem_after) + ", watermark " +
                                             fmt_pct(t.memory_pct) + ")");
  }
  const double pods_after = pct(pods + 1, pods_alloc);
  if (pods_after > t.pods_pct) {
    return make_error(Errc::unavailable, "pods: " + std::to_string(pods + 1) + " of " + std::to_string(pods_alloc) +
                                             " with this sandbox (" + fmt_pct(pods_after) + ", watermark " +
                                             fmt_pct(t.pods_pct) + ")");
  }
  if (!fits_somewhere) {
    return make_error(Errc::unavailable, "no single node has " + std::to_string(ask.cpu_millis) + "m cpu and " +
                                             mib(ask.memory_bytes) + " memory unrequested");
  }
  return {};
}

std::string describe_load(const ClusterLoad& load, const PodAsk& ask) {
  std::string out = "ask cpu=" + std::to_string(ask.cpu_millis) + "m memory=" + mib(ask.memory_bytes) + "; " +
                    std::to_string(load.nodes.size()) + " node(s) counted, " + std::to_string(load.nodes_left_out) +
                    " left out, metrics " + (load.has_metrics ? "used" : "absent");
  for (const auto& n : load.nodes) {
    out += "; " + n.name + ": cpu req " + std::to_string(n.cpu_requested) + "m";
    if (n.cpu_used) out += " used " + std::to_string(*n.cpu_used) + "m";
    out += " of " + std::to_string(n.cpu_allocatable) + "m, memory req " + mib(n.memory_requested);
    if (n.memory_used) out += " used " + mib(*n.memory_used);
    out += " of " + mib(n.memory_allocatable) + ", pods " + std::to_string(n.pods) + "/" +
           std::to_string(n.pods_allocatable);
  }
  return out;
}

}  // namespace execd::gateway
