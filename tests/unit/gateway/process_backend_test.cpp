// The process backend against the real thing: bubblewrap, cgroup v1/v2 files, a tmpfs
// quota and the real execd binary (EXECD_BIN, else the execd beside this test's build
// directory). Needs root, as the gateway's process backend does.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/fd_io.hpp"
#include "gateway/backends/process_backend.hpp"
#include "gateway/backends/sandbox_record.hpp"
#include "gateway/backends/workspace_quota.hpp"
#include "http/client.hpp"
#include "isolation/cgroup.hpp"
#include "isolation/cgroup_root.hpp"
#include "support/proc_probe.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using namespace execd::gateway;
using namespace std::chrono_literals;
using execd::test::TempDir;
namespace fs = std::filesystem;

namespace {

constexpr const char* kToken = "sandbox-token-123";

std::string execd_bin() {
  if (const char* env = std::getenv("EXECD_BIN"); env != nullptr && *env != '\0') return env;
  // <build>/tests/unit_gateway -> <build>/execd
  return (fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "execd").string();
}

std::string unique_id(const std::string& what) {
  static std::atomic<int> n{0};
  return "pb-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

std::unique_ptr<ProcessBackend> open_backend(const std::string& state, ProcessBackend::Options o = {}) {
  o.execd_binary = o.execd_binary.empty() ? execd_bin() : o.execd_binary;
  o.state_dir = state;
  auto b = ProcessBackend::open(o);
  REQUIRE_MESSAGE(b.ok(), (b.ok() ? "" : b.error().message));
  return std::move(b).value();
}

SandboxSpec host_spec() {
  SandboxSpec s;
  s.image = "host";
  return s;
}

int ping(const Placement& p, const std::string& token) {
  execd::http::ClientRequest req;
  req.target = "/ping";
  req.timeout = 3000ms;
  if (!token.empty()) req.headers.emplace_back("X-EXECD-ACCESS-TOKEN", token);
  auto r = execd::http::send_request({p.host, p.port, ""}, req);
  return r.ok() ? r->status : -1;
}

struct CommandResult {
  std::string out;  // stdout lines joined by '\n'
  bool error = false;
  std::string raw;
};

CommandResult run(const Placement& p, const std::string& command, std::chrono::seconds timeout = 30s) {
  execd::test::SseRequest req;
  req.method = "POST";
  req.path = "/command";
  req.body = nlohmann::json{{"command", command}}.dump();
  req.headers.emplace("X-EXECD-ACCESS-TOKEN", kToken);
  req.timeout = timeout;
  auto r = execd::test::sse_request(p.port, req);
  CommandResult out;
  out.raw = r.raw;
  for (const auto& e : r.of_type("stdout")) {
    if (!out.out.empty()) out.out += "\n";
    out.out += e.json.value("text", "");
  }
  out.error = !r.of_type("error").empty();
  return out;
}

/// Every cgroup directory the sandbox could have, over the backend's parents.
std::vector<std::string> cgroup_dirs(const ProcessBackend& b, const std::string& id) {
  std::vector<std::string> out;
  for (const auto& [controller, parent] : b.cgroups().parent_dirs()) {
    if (fs::exists(parent + "/" + id)) out.push_back(parent + "/" + id);
  }
  return out;
}

std::string cgroup_file(const ProcessBackend& b, const std::string& controller, const std::string& id,
                        const std::string& file) {
  const auto& parents = b.cgroups().parent_dirs();
  const std::string parent = b.cgroups().version() == 2 ? parents.at("") : parents.at(controller);
  return parent + "/" + id + "/" + file;
}

/// Nothing of sandbox `id` remains: no process naming it, no cgroup, no mount, no directory.
void check_gone(ProcessBackend& b, const std::string& id) {
  const std::string dir = b.sandbox_dir(id);
  CHECK_MESSAGE(execd::test::within(3s, [&] { return execd::test::live_with(dir).empty(); }),
                "processes left: " << execd::test::live_with(dir).size());
  CHECK(cgroup_dirs(b, id).empty());
  CHECK_FALSE(WorkspaceQuota::is_mounted(dir + "/workspace"));
  CHECK_FALSE(fs::exists(dir));
  auto status = b.inspect({id, "127.0.0.1", 0});
  REQUIRE(status.ok());
  CHECK(status->phase == InstanceStatus::Phase::gone);
}

long read_counter(const std::string& path) {
  const std::string text = execd::core::read_file(path);
  try {
    return std::stol(text);
  } catch (...) {
    return -1;
  }
}

}  // namespace

TEST_CASE("process backend: execd starts in a namespace sandbox, answers with its token, runs commands inside") {
  TempDir state;
  auto b = open_backend(state.str());
  CHECK(b->name() == "process");
  const std::string id = unique_id("basic");
  SandboxSpec spec = host_spec();
  spec.env = {{"GREETING", "hello from the spec"}};
  const bool cpu = b->cgroups().writable("cpu");
  if (cpu) spec.limits.cpu_millis = 250;
  REQUIRE(b->validate(spec).ok());
  REQUIRE(b->has_room(spec).ok());

  auto placed = b->create(id, spec, kToken);
  REQUIRE_MESSAGE(placed.ok(), (placed.ok() ? "" : placed.error().message));
  CHECK(placed->handle == id);
  CHECK(placed->host == "127.0.0.1");
  CHECK(placed->port > 0);

  CHECK(ping(*placed, kToken) == 200);
  CHECK(ping(*placed, "") == 401);
  CHECK(ping(*placed, "wrong") == 401);

  auto r = run(*placed,
               "hostname; echo pid=$$; pwd; echo \"$GREETING\"; tr '\\0' ' ' </proc/1/cmdline; echo; "
               "echo made > in-workspace.txt; test -e " + b->sandbox_dir(id) + " && echo host-visible || echo host-hidden");
  std::istringstream lines(r.out);
  std::string hostname, pid_line, cwd, greeting, init, visible;
  std::getline(lines, hostname);
  std::getline(lines, pid_line);
  std::getline(lines, cwd);
  std::getline(lines, greeting);
  std::getline(lines, init);
  std::getline(lines, visible);
  CHECK(hostname == id);
  // A fresh pid namespace: bwrap is pid 1, execd 2, the command's shell a small number.
  REQUIRE(pid_line.rfind("pid=", 0) == 0);
  CHECK(std::stol(pid_line.substr(4)) < 100);
  CHECK(init.find("bwrap") != std::string::npos);
  CHECK(cwd == "/workspace");
  CHECK(greeting == "hello from the spec");
  CHECK(visible == "host-hidden");  // the gateway's state directory is not in the sandbox
  CHECK(execd::core::read_file(b->sandbox_dir(id) + "/workspace/in-workspace.txt") == "made\n");

  if (cpu) {
    const auto quota = execd::isolation::read_cgroup_number(
        cgroup_file(*b, "cpu", id, b->cgroups().version() == 2 ? "cpu.max" : "cpu.cfs_quota_us"));
    if (b->cgroups().version() == 1) CHECK(quota == 25000u);
  }

  // Neither the token nor the spec's env is on a command line other users of the host
  // can read (bwrap takes its options from a file; execd its token from its environment).
  CHECK(execd::test::live_with(kToken).empty());
  CHECK(execd::test::live_with("hello from the spec").empty());
  CHECK_FALSE(fs::exists(b->sandbox_dir(id) + "/bwrap.args"));

  auto st = b->inspect(*placed);
  REQUIRE(st.ok());
  CHECK(st->phase == InstanceStatus::Phase::running);

  auto listed = b->list();
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  CHECK(listed->at(0).sandbox_id == id);
  CHECK(listed->at(0).placement.port == placed->port);

  REQUIRE(b->remove(*placed).ok());
  check_gone(*b, id);
  CHECK(b->remove(*placed).ok());  // idempotent
}

TEST_CASE("process backend: a command allocating past the memory limit is OOM-killed and counted") {
  TempDir state;
  auto b = open_backend(state.str());
  const std::string id = unique_id("oom");
  SandboxSpec spec = host_spec();
  spec.limits.memory_bytes = 96ull << 20;
  auto placed = b->create(id, spec, kToken);
  REQUIRE_MESSAGE(placed.ok(), (placed.ok() ? "" : placed.error().message));
  const std::string limit_file =
      cgroup_file(*b, "memory", id, b->cgroups().version() == 2 ? "memory.max" : "memory.limit_in_bytes");
  CHECK(execd::isolation::read_cgroup_number(limit_file) == (96ull << 20));

  auto r = run(*placed, "python3 -c 'b = bytearray(400 << 20); print(\"allocated\", len(b))'; echo rc=$?");
  CHECK(r.out.find("allocated") == std::string::npos);
  CHECK(r.out.find("rc=137") != std::string::npos);
  const std::string events = b->cgroups().version() == 2 ? "memory.events" : "memory.oom_control";
  CHECK(execd::isolation::read_cgroup_key(cgroup_file(*b, "memory", id, events), "oom_kill").value_or(0) >= 1);
  // execd itself survived: the sandbox still serves.
  CHECK(ping(*placed, kToken) == 200);
  auto st = b->inspect(*placed);
  REQUIRE(st.ok());
  CHECK(st->phase == InstanceStatus::Phase::running);
  REQUIRE(b->remove(*placed).ok());
  check_gone(*b, id);
}

TEST_CASE("process backend: the pids cap stops a fork loop at the cap") {
  TempDir state;
  auto b = open_backend(state.str());
  const std::string id = unique_id("pids");
  SandboxSpec spec = host_spec();
  spec.limits.max_pids = 48;
  auto placed = b->create(id, spec, kToken);
  REQUIRE_MESSAGE(placed.ok(), (placed.ok() ? "" : placed.error().message));
  const std::string current = cgroup_file(*b, "pids", id, "pids.current");
  CHECK(execd::isolation::read_cgroup_number(cgroup_file(*b, "pids", id, "pids.max")) == 48u);

  // 200 background sleeps asked for; the kernel refuses forks past the cap.
  std::atomic<uint64_t> peak{0};
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      peak = std::max<uint64_t>(peak, execd::isolation::read_cgroup_number(current).value_or(0));
      std::this_thread::sleep_for(5ms);
    }
  });
  auto r = run(*placed, "i=0; while [ $i -lt 200 ]; do sleep 3 & i=$((i+1)); done 2>/dev/null; echo looped; wait", 20s);
  sampling = false;
  sampler.join();
  CHECK(peak.load() <= 48u);
  CHECK(peak.load() >= 40u);  // it did reach the cap
  CHECK(execd::isolation::read_cgroup_key(cgroup_file(*b, "pids", id, "pids.events"), "max").value_or(0) >= 1);
  REQUIRE(b->remove(*placed).ok());
  check_gone(*b, id);
}

TEST_CASE("process backend: the workspace quota is a real limit (ENOSPC inside) and goes with the sandbox") {
  TempDir state;
  auto b = open_backend(state.str());
  const std::string id = unique_id("disk");
  SandboxSpec spec = host_spec();
  spec.limits.disk_bytes = 4ull << 20;
  auto placed = b->create(id, spec, kToken);
  REQUIRE_MESSAGE(placed.ok(), (placed.ok() ? "" : placed.error().message));
  CHECK(WorkspaceQuota::is_mounted(b->sandbox_dir(id) + "/workspace"));
  auto r = run(*placed, "dd if=/dev/zero of=big bs=1M count=8 2>&1; echo rc=$?; echo small > small.txt && echo wrote");
  CHECK(r.out.find("No space left on device") != std::string::npos);
  CHECK(r.out.find("rc=1") != std::string::npos);
  CHECK(fs::file_size(b->sandbox_dir(id) + "/workspace/big") <= (4u << 20));
  REQUIRE(b->remove(*placed).ok());
  check_gone(*b, id);
}

TEST_CASE("process backend: pause freezes the entrypoint's counter loop, resume lets it go on") {
  TempDir state;
  auto b = open_backend(state.str());
  const std::string id = unique_id("pause");
  SandboxSpec spec = host_spec();
  spec.entrypoint = {"/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /workspace/counter; sleep 0.1; done"};
  auto placed = b->create(id, spec, kToken);
  REQUIRE_MESSAGE(placed.ok(), (placed.ok() ? "" : placed.error().message));
  const std::string counter = b->sandbox_dir(id) + "/workspace/counter";
  REQUIRE(execd::test::within(5s, [&] { return read_counter(counter) >= 3; }));

  REQUIRE(b->pause(*placed).ok());
  auto st = b->inspect(*placed);
  REQUIRE(st.ok());
  CHECK(st->phase == InstanceStatus::Phase::paused);
  const long frozen_at = read_counter(counter);
  std::this_thread::sleep_for(600ms);
  CHECK(read_counter(counter) == frozen_at);
  CHECK(b->pause(*placed).ok());  // already frozen: still fine

  REQUIRE(b->resume(*placed).ok());
  CHECK(execd::test::within(3s, [&] { return read_counter(counter) >= frozen_at + 3; }));
  st = b->inspect(*placed);
  REQUIRE(st.ok());
  CHECK(st->phase == InstanceStatus::Phase::running);
  CHECK(ping(*placed, kToken) == 200);

  // A paused sandbox is removed all the same.
  REQUIRE(b->pause(*placed).ok());
  REQUIRE(b->remove(*placed).ok());
  check_gone(*b, id);
  CHECK(b->pause(*placed).error().code == execd::core::Errc::not_found);
}

TEST_CASE("process backend: sandboxes outlive the backend object; a new one on the same state lists the live ones") {
  TempDir state;
  const std::string keep = unique_id("keep");
  const std::string gone = unique_id("gone");
  Placement kept;
  {
    auto first = open_backend(state.str());
    auto a = first->create(keep, host_spec(), kToken);
    REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : a.error().message));
    auto c = first->create(gone, host_spec(), kToken);
    REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
    REQUIRE(first->remove(*c).ok());
    kept = *a;
  }  // the "gateway" is gone; its sandbox is not
  CHECK(ping(kept, kToken) == 200);

  auto second = open_backend(state.str());
  auto listed = second->list();
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  CHECK(listed->at(0).sandbox_id == keep);
  CHECK(listed->at(0).placement.handle == kept.handle);
  CHECK(listed->at(0).placement.port == kept.port);
  CHECK(listed->at(0).status.phase == InstanceStatus::Phase::running);

  // The second object controls it fully: pause, resume, remove.
  REQUIRE(second->pause(kept).ok());
  REQUIRE(second->resume(kept).ok());
  CHECK(ping(kept, kToken) == 200);
  REQUIRE(second->remove(kept).ok());
  check_gone(*second, keep);
  listed = second->list();
  REQUIRE(listed.ok());
  CHECK(listed->empty());

  // An empty cgroup parent goes with the last object; one still in use is made again.
  const auto parents = second->cgroups().parent_dirs();
  REQUIRE_FALSE(parents.empty());
  {
    auto other = open_backend(state.str());
    second.reset();
    for (const auto& [controller, d] : parents) CHECK_FALSE(fs::exists(d));
    const std::string again_id = unique_id("again");
    auto again = other->create(again_id, host_spec(), kToken);
    REQUIRE_MESSAGE(again.ok(), (again.ok() ? "" : again.error().message));
    CHECK(ping(*again, kToken) == 200);
    REQUIRE(other->remove(*again).ok());
    check_gone(*other, again_id);
  }
  for (const auto& [controller, d] : parents) CHECK_FALSE(fs::exists(d));
}

TEST_CASE("process backend: a sandbox whose execd ends is reported exited with its status") {
  TempDir state;
  auto b = open_backend(state.str());
  const std::string id = unique_id("exit");
  auto placed = b->create(id, host_spec(), kToken);
  REQUIRE_MESSAGE(placed.ok(), (placed.ok() ? "" : placed.error().message));
  auto record = SandboxRecord::load(b->sandbox_dir(id) + "/record.json");
  REQUIRE(record.ok());
  // Kill everything in the sandbox but the keeper (the sandbox's execd "crashes").
  const std::string procs = cgroup_file(*b, "pids", id, "cgroup.procs");
  const auto members = execd::isolation::read_cgroup_procs(fs::path(procs).parent_path().string());
  REQUIRE(members.size() >= 3);  // keeper, bwrap, its pid 1, execd
  for (const auto pid : members) {
    if (pid != record->pid) ::kill(pid, SIGKILL);
  }
  REQUIRE(execd::test::within(5s, [&] {
    auto st = b->inspect(*placed);
    return st.ok() && st->phase == InstanceStatus::Phase::exited;
  }));
  auto st = b->inspect(*placed);
  CHECK(st->message.find("exit status") != std::string::npos);
  auto listed = b->list();
  REQUIRE(listed.ok());
  CHECK(listed->empty());
  CHECK(b->pause(*placed).error().code == execd::core::Errc::conflict);
  REQUIRE(b->remove(*placed).ok());
  check_gone(*b, id);
}

TEST_CASE("process backend: an execd that cannot start fails create clearly and leaves nothing") {
  TempDir state;
  {
    ProcessBackend::Options o;
    o.execd_binary = state.str() + "/no-such-execd";
    o.state_dir = state.str() + "/state";
    auto b = ProcessBackend::open(o);
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().code == execd::core::Errc::unavailable);
    CHECK(b.error().message.find("no-such-execd") != std::string::npos);
  }
  // An "execd" that exits at once, before it writes a port.
  const auto fake = state.write("fake-execd", "#!/bin/sh\necho 'fake execd: refusing to start' >&2\nexit 3\n");
  fs::permissions(fake, fs::perms::owner_all);
  ProcessBackend::Options o;
  o.execd_binary = fake.string();
  auto b = open_backend(state.str() + "/state", o);
  const std::string id = unique_id("bad");
  SandboxSpec spec = host_spec();
  spec.limits.disk_bytes = 1ull << 20;
  spec.limits.memory_bytes = 64ull << 20;
  auto placed = b->create(id, spec, kToken);
  REQUIRE_FALSE(placed.ok());
  CHECK(placed.error().code == execd::core::Errc::unavailable);
  CHECK(placed.error().message.find("exit status 3") != std::string::npos);
  CHECK(placed.error().message.find("fake execd: refusing to start") != std::string::npos);
  check_gone(*b, id);
}

TEST_CASE("process backend: validate refuses escapes, missing root filesystems and limits the host cannot set") {
  TempDir state;
  TempDir rootfs;
  fs::create_directories(rootfs.path() / "debian/bin");
  ProcessBackend::Options o;
  o.rootfs_dir = rootfs.str();
  auto b = open_backend(state.str(), o);
  SandboxSpec spec = host_spec();
  CHECK(b->validate(spec).ok());
  for (const char* bad : {"../x", "/etc", "debian/../../x", "missing", ""}) {
    spec.image = bad;
    auto r = b->validate(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == execd::core::Errc::invalid_argument);
    CHECK(r.error().message.find("image.uri") != std::string::npos);
  }
  spec.image = "debian";
  CHECK(b->validate(spec).ok());
  spec.entrypoint = {"serve"};
  auto no_sh = b->validate(spec);
  REQUIRE_FALSE(no_sh.ok());
  CHECK(no_sh.error().message.find("/bin/sh") != std::string::npos);

  // Without --rootfs-dir, only `host`.
  auto plain = open_backend(state.str());
  spec = host_spec();
  spec.image = "debian";
  CHECK(plain->validate(spec).error().message.find("--rootfs-dir") != std::string::npos);

  // A host whose cgroup mounts lack the cpu controller: a cpu ask is refused, naming it.
  std::string mountinfo;
  std::istringstream in(execd::core::read_file("/proc/self/mountinfo"));
  for (std::string line; std::getline(in, line);) {
    // "... - cgroup cgroup rw,cpu" (or rw,cpu,cpuacct): the super options name the controllers.
    bool cpu_line = false;
    if (line.find(" - cgroup ") != std::string::npos) {
      std::istringstream opts(line.substr(line.rfind(' ') + 1));
      for (std::string opt; std::getline(opts, opt, ',');) cpu_line = cpu_line || opt == "cpu";
    }
    if (!cpu_line) mountinfo += line + "\n";
  }
  const auto mi = state.write("mountinfo-without-cpu", mountinfo);
  ProcessBackend::Options no_cpu;
  no_cpu.cgroup_mountinfo = mi.string();
  auto nc = open_backend(state.str() + "/nc", no_cpu);
  if (nc->cgroups().version() == 1) {
    CHECK_FALSE(nc->cgroups().writable("cpu"));
    spec = host_spec();
    spec.limits.cpu_millis = 500;
    auto r = nc->validate(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == execd::core::Errc::invalid_argument);
    CHECK(r.error().message.find("resourceLimits.cpu") != std::string::npos);
    spec.limits.cpu_millis = 0;
    spec.limits.memory_bytes = 64 << 20;
    CHECK(nc->validate(spec).ok());
  }
  spec = host_spec();
  spec.env = {{"A=B", "x"}};
  CHECK(b->validate(spec).error().message.find("env") != std::string::npos);
}

TEST_CASE("process backend: has_room names what ran out") {
  TempDir state;
  ProcessBackend::Options o;
  o.max_instances = 1;
  auto b = open_backend(state.str(), o);
  SandboxSpec spec = host_spec();
  spec.limits.memory_bytes = 1ull << 50;  // a petabyte
  auto r = b->has_room(spec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == execd::core::Errc::unavailable);
  CHECK(r.error().message.find("memory") != std::string::npos);

  const std::string id = unique_id("room");
  auto placed = b->create(id, host_spec(), kToken);
  REQUIRE_MESSAGE(placed.ok(), (placed.ok() ? "" : placed.error().message));
  auto full = b->has_room(host_spec());
  REQUIRE_FALSE(full.ok());
  CHECK(full.error().message.find("1 of 1") != std::string::npos);
  REQUIRE(b->remove(*placed).ok());
  CHECK(b->has_room(host_spec()).ok());
  check_gone(*b, id);
}

TEST_CASE("process backend: a root filesystem image without glibc runs the host's execd through the host's loader") {
  const char* busybox = "/bin/busybox";
  REQUIRE_MESSAGE(fs::exists(busybox), "the test's image is made of the host's static busybox");
  TempDir state;
  TempDir rootfs;
  const fs::path image = rootfs.path() / "busybox";
  fs::create_directories(image / "bin");
  fs::copy_file(busybox, image / "bin/busybox");
  for (const char* tool : {"sh", "echo", "cat", "ls", "hostname", "sleep"}) fs::create_symlink("busybox", image / "bin" / tool);
  fs::create_directories(image / "etc");
  std::ofstream(image / "etc/image-name") << "tiny busybox image\n";

  ProcessBackend::Options o;
  o.rootfs_dir = rootfs.str();
  auto b = open_backend(state.str(), o);
  const std::string id = unique_id("rootfs");
  SandboxSpec spec = host_spec();
  spec.image = "busybox";
  spec.entrypoint = {"/bin/sh", "-c", "echo entrypoint-ran > /workspace/ep"};
  REQUIRE(b->validate(spec).ok());
  auto placed = b->create(id, spec, kToken);
  REQUIRE_MESSAGE(placed.ok(), (placed.ok() ? "" : placed.error().message));
  CHECK(ping(*placed, kToken) == 200);
  auto r = run(*placed, "cat /etc/image-name; ls /usr 2>&1 | head -1; ls /lib 2>&1 | head -1; cat /workspace/ep");
  CHECK(r.out.find("tiny busybox image") != std::string::npos);
  CHECK(r.out.find("entrypoint-ran") != std::string::npos);
  // Nothing of the host's /usr or /lib: only the image and /.execd.
  CHECK(r.out.find("No such file or directory") != std::string::npos);
  REQUIRE(b->remove(*placed).ok());
  check_gone(*b, id);
}

TEST_CASE("process backend: twenty sandboxes created at once all answer, each on its own port, and all go") {
  TempDir state;
  auto b = open_backend(state.str());
  constexpr int kCount = 20;
  std::vector<execd::core::Result<Placement>> placed(kCount, execd::core::Error{execd::core::Errc::internal, "unset"});
  std::vector<std::thread> threads;
  const std::string prefix = unique_id("many");
  for (int i = 0; i < kCount; ++i) {
    threads.emplace_back([&, i] { placed[i] = b->create(prefix + "-" + std::to_string(i), host_spec(), kToken); });
  }
  for (auto& t : threads) t.join();
  std::set<int> ports;
  for (int i = 0; i < kCount; ++i) {
    REQUIRE_MESSAGE(placed[i].ok(), (placed[i].ok() ? "" : placed[i].error().message));
    CHECK(ping(*placed[i], kToken) == 200);
    ports.insert(placed[i]->port);
  }
  CHECK(ports.size() == kCount);
  auto listed = b->list();
  REQUIRE(listed.ok());
  CHECK(listed->size() == kCount);
  threads.clear();
  for (int i = 0; i < kCount; ++i) threads.emplace_back([&, i] { CHECK(b->remove(*placed[i]).ok()); });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kCount; ++i) check_gone(*b, prefix + "-" + std::to_string(i));
}
