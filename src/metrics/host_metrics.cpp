#include "metrics/host_metrics.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <sstream>

#include "core/clock.hpp"
#include "core/fd_io.hpp"
#include "core/keyed_text.hpp"

namespace execd::metrics {
namespace {

int64_t monotonic_usec() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

// "Key: 123 kB" (/proc/meminfo) and "key 123" (cgroup cpu.stat, memory.stat); 0 when absent.
uint64_t value_of(const std::string& text, const std::string& key) { return core::keyed_value(text, key).value_or(0); }

}  // namespace

HostReader::HostReader(std::string root) : root_(std::move(root)) {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  online_cpus_ = root_.empty() && n > 0 ? static_cast<double>(n) : 0;
  if (online_cpus_ == 0) {
    // Count "cpuN" lines of /proc/stat (also what tests with a fake root rely on).
    std::istringstream in(read("/proc/stat"));
    std::string line;
    int count = 0;
    while (std::getline(in, line)) {
      if (line.size() > 3 && line.rfind("cpu", 0) == 0 && std::isdigit(static_cast<unsigned char>(line[3])) != 0) ++count;
    }
    online_cpus_ = std::max(1, count);
  }
  // cgroup v2: "0::/some/path" in /proc/self/cgroup.
  std::istringstream cg(read("/proc/self/cgroup"));
  std::string line;
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) == 0) {
      std::string rel = line.substr(3);
      if (rel == "/") rel.clear();
      cgroup_dir_ = "/sys/fs/cgroup" + rel;
    }
  }
  if (!cgroup_dir_.empty()) {
    std::istringstream cpu_max(read(cgroup_dir_ + "/cpu.max"));
    std::string quota;
    double period = 0;
    if (cpu_max >> quota >> period && quota != "max" && period > 0) {
      cgroup_cpus_ = std::min(online_cpus_, std::strtod(quota.c_str(), nullptr) / period);
    }
  }
}

std::string HostReader::read(const std::string& path) const { return core::read_file(root_ + path); }

CpuCounters HostReader::read_cpu() const {
  CpuCounters c;
  c.wall_usec = monotonic_usec();
  std::istringstream in(read("/proc/stat"));
  std::string label;
  in >> label;  // "cpu"
  uint64_t v[10] = {};
  for (auto& x : v) in >> x;
  // user nice system idle iowait irq softirq steal guest guest_nice (guests are inside user)
  const uint64_t idle = v[3] + v[4];
  const uint64_t total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
  c.total_ticks = total;
  c.busy_ticks = total - idle;
  if (cgroup_cpus_) c.cgroup_usage_usec = value_of(read(cgroup_dir_ + "/cpu.stat"), "usage_usec");
  return c;
}

HostMetrics HostReader::compute(const CpuCounters& before, const CpuCounters& after) const {
  HostMetrics m;
  m.timestamp = core::unix_ms();
  m.cpu_count = cgroup_cpus_.value_or(online_cpus_);
  double pct = 0;
  if (cgroup_cpus_ && before.cgroup_usage_usec && after.cgroup_usage_usec && after.wall_usec > before.wall_usec) {
    const double used = static_cast<double>(*after.cgroup_usage_usec - *before.cgroup_usage_usec);
    pct = 100.0 * used / (static_cast<double>(after.wall_usec - before.wall_usec) * *cgroup_cpus_);
  } else if (after.total_ticks > before.total_ticks) {
    pct = 100.0 * static_cast<double>(after.busy_ticks - before.busy_ticks) /
          static_cast<double>(after.total_ticks - before.total_ticks);
  }
  m.cpu_used_pct = std::clamp(pct, 0.0, 100.0);

  const std::string meminfo = read("/proc/meminfo");
  const double total_kib = static_cast<double>(value_of(meminfo, "MemTotal"));
  const double avail_kib = static_cast<double>(value_of(meminfo, "MemAvailable"));
  m.mem_total_mib = total_kib / 1024.0;
  m.mem_used_mib = std::max(0.0, total_kib - avail_kib) / 1024.0;
  if (!cgroup_dir_.empty()) {
    const std::string limit = read(cgroup_dir_ + "/memory.max");
    const double limit_bytes = std::strtod(limit.c_str(), nullptr);
    if (!limit.empty() && limit.rfind("max", 0) != 0 && limit_bytes > 0 && limit_bytes / 1048576.0 < m.mem_total_mib) {
      // Like `docker stats`: usage minus reclaimable page cache.
      const double current = std::strtod(read(cgroup_dir_ + "/memory.current").c_str(), nullptr);
      const double inactive = static_cast<double>(value_of(read(cgroup_dir_ + "/memory.stat"), "inactive_file"));
      m.mem_total_mib = limit_bytes / 1048576.0;
      m.mem_used_mib = std::max(0.0, current - inactive) / 1048576.0;
    }
  }
  m.mem_used_mib = std::min(m.mem_used_mib, m.mem_total_mib);
  return m;
}

}  // namespace execd::metrics
