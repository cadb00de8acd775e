#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace execd::gateway {

/// How full the cluster may get before the Kubernetes backend says it has no room (the
/// watermark): percentages of what Ready, schedulable nodes can hold.
struct KubeThresholds {
  double cpu_pct = 80;
  double memory_pct = 80;
  double pods_pct = 90;
};

/// A quantity as the API writes it (requests, allocatable, metrics usage: "250m", "2",
/// "16Gi", "123456789n", "1500u") in thousandths of its unit, rounded up.
core::Result<uint64_t> parse_kube_quantity_millis(std::string_view text);

/// What one pod asks of a node: the scheduler's rule, the larger of the containers' sum
/// and the largest init container, plus spec.overhead. cpu in millicores, memory in bytes.
struct PodAsk {
  uint64_t cpu_millis = 0;
  uint64_t memory_bytes = 0;
};
PodAsk pod_requests(const nlohmann::json& pod);

/// One Ready, schedulable node: what it can hold and what is on it.
struct NodeLoad {
  std::string name;
  uint64_t cpu_allocatable = 0;     ///< millicores
  uint64_t memory_allocatable = 0;  ///< bytes
  uint64_t pods_allocatable = 0;
  uint64_t cpu_requested = 0;
  uint64_t memory_requested = 0;
  uint64_t pods = 0;                 ///< pods bound to it that have not ended
  std::optional<uint64_t> cpu_used;  ///< metrics.k8s.io usage, when served
  std::optional<uint64_t> memory_used;
  /// The larger of requested and used: what the watermark counts.
  [[nodiscard]] uint64_t cpu_load() const { return std::max(cpu_requested, cpu_used.value_or(0)); }
  [[nodiscard]] uint64_t memory_load() const { return std::max(memory_requested, memory_used.value_or(0)); }
};

/// The cluster as the watermark sees it.
struct ClusterLoad {
  std::vector<NodeLoad> nodes;  ///< Ready and schedulable only
  size_t nodes_left_out = 0;    ///< not Ready, or cordoned
  bool has_metrics = false;     ///< usage from metrics.k8s.io was folded in
};

/// From a NodeList, a PodList (all namespaces) and, when the cluster serves
/// metrics.k8s.io, a NodeMetricsList (null otherwise). Pods that ended (Succeeded,
/// Failed) or are not bound to a counted node do not count.
ClusterLoad compute_cluster_load(const nlohmann::json& nodes, const nlohmann::json& pods,
                                 const nlohmann::json& node_metrics);

/// Room for `ask` under the thresholds: cluster-wide for cpu, memory and pod count (the
/// load after placing it, against the threshold share of allocatable), and at least one
/// node whose free allocatable holds it whole. unavailable naming what ran out, with the
/// numbers, otherwise.
core::Result<void> check_room(const ClusterLoad& load, const PodAsk& ask, const KubeThresholds& thresholds);

/// One line with every input of a placement decision, for the log.
std::string describe_load(const ClusterLoad& load, const PodAsk& ask);

}  // namespace execd::gateway
