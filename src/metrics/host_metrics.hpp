#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace execd::metrics {

/// One reading of the host (or of the cgroup that limits us), in the contract's units.
struct HostMetrics {
  double cpu_count = 0;      ///< CPUs we may use (cgroup quota aware, may be fractional)
  double cpu_used_pct = 0;   ///< 0..100 over the last interval
  double mem_total_mib = 0;  ///< host memory, or the cgroup limit when lower
  double mem_used_mib = 0;
  int64_t timestamp = 0;     ///< Unix ms of the reading
};

/// Cumulative counters read from /proc and the cgroup filesystem; two of them make a
/// HostMetrics. `root` lets tests point at a fake /proc + /sys tree.
struct CpuCounters {
  uint64_t busy_ticks = 0;
  uint64_t total_ticks = 0;
  std::optional<uint64_t> cgroup_usage_usec;  ///< set when a cgroup CPU limit applies
  int64_t wall_usec = 0;                      ///< monotonic
};

class HostReader {
 public:
  explicit HostReader(std::string root = "");
  [[nodiscard]] CpuCounters read_cpu() const;
  /// Computes a reading from two CPU snapshots plus current memory.
  [[nodiscard]] HostMetrics compute(const CpuCounters& before, const CpuCounters& after) const;

 private:
  [[nodiscard]] std::string read(const std::string& path) const;

  std::string root_;
  std::string cgroup_dir_;    // our cgroup v2 directory, "" when none
  double online_cpus_ = 1;
  std::optional<double> cgroup_cpus_;  // quota / period when limited
};

}  // namespace execd::metrics
