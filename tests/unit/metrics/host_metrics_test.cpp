#include <doctest/doctest.h>

#include "metrics/host_metrics.hpp"
#include "metrics/metrics_sampler.hpp"
#include "support/temp_dir.hpp"

using namespace execd;

namespace {

void write_stat(const test::TempDir& root, uint64_t user, uint64_t idle) {
  root.write("proc/stat", "cpu  " + std::to_string(user) + " 0 0 " + std::to_string(idle) +
                              " 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\ncpu1 1 0 0 1 0 0 0 0 0 0\n");
}

}  // namespace

TEST_CASE("cpu and memory figures come from /proc deltas") {
  test::TempDir root;
  write_stat(root, 100, 100);
  root.write("proc/meminfo", "MemTotal:       2097152 kB\nMemFree:  1 kB\nMemAvailable:   1048576 kB\n");
  metrics::HostReader reader(root.str());
  const auto before = reader.read_cpu();
  write_stat(root, 130, 170);  // 30 busy of 100 ticks
  const auto after = reader.read_cpu();
  const auto m = reader.compute(before, after);
  CHECK(m.cpu_count == 2);
  CHECK(m.cpu_used_pct == doctest::Approx(30.0));
  CHECK(m.mem_total_mib == doctest::Approx(2048.0));
  CHECK(m.mem_used_mib == doctest::Approx(1024.0));
  CHECK(m.timestamp > 0);
}

TEST_CASE("a cgroup limit bounds cpu_count and memory") {
  test::TempDir root;
  write_stat(root, 0, 0);
  root.write("proc/meminfo", "MemTotal:       8388608 kB\nMemAvailable:   8388608 kB\n");
  root.write("proc/self/cgroup", "0::/box\n");
  // HostReader reads cgroup files below /sys/fs/cgroup of the same root.
  root.write("sys/fs/cgroup/box/cpu.max", "50000 100000\n");
  root.write("sys/fs/cgroup/box/cpu.stat", "usage_usec 0\n");
  root.write("sys/fs/cgroup/box/memory.max", "1073741824\n");
  root.write("sys/fs/cgroup/box/memory.current", "536870912\n");
  root.write("sys/fs/cgroup/box/memory.stat", "anon 1\ninactive_file 268435456\n");
  metrics::HostReader reader(root.str());
  const auto m = reader.compute(reader.read_cpu(), reader.read_cpu());
  CHECK(m.cpu_count == doctest::Approx(0.5));
  CHECK(m.mem_total_mib == doctest::Approx(1024.0));
  CHECK(m.mem_used_mib == doctest::Approx(256.0));
}

TEST_CASE("the sampler publishes a reading soon after start and feeds readers the newest") {
  metrics::MetricsSampler sampler(std::chrono::milliseconds(100));
  const auto first = sampler.latest();
  CHECK(first.timestamp > 0);
  CHECK(first.cpu_count > 0);
  exec::Cursor c;
  auto r1 = sampler.read(c, 10, std::chrono::seconds(2));
  REQUIRE(r1.events.size() == 1);
  auto r2 = sampler.read(c, 10, std::chrono::seconds(2));
  REQUIRE(r2.events.size() == 1);
  CHECK(r2.events[0].seq > r1.events[0].seq);
  const auto j = nlohmann::json::parse(r2.events[0].json);
  CHECK(j.contains("cpu_used_pct"));
  sampler.stop();
  auto after_stop = sampler.read(c, 10, std::chrono::seconds(2));
  CHECK(after_stop.end);
}
