// Issue 11, kernels: POST /code/context takes the isolation and limit fields; a `process`
// kernel runs in its own cgroup with its limits and a clean environment, a `namespace`
// kernel inside bwrap without network, talking ZeroMQ over ipc:// socket files; the warm
// pool never hands an unisolated kernel to an isolated request; nothing is left behind.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/daemon_process.hpp"
#include "support/proc_probe.hpp"
#include "support/http_checks.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::sse_request;
using execd::test::SseRequest;
using execd::test::SseResponse;
using execd::test::TempDir;
using execd::test::daemon_cgroups;
using execd::test::processes;
using execd::test::within;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kToken = "tok-code-iso-1234";
constexpr const char* kSecret = "hunter2-daemon-only";

SseResponse post(const DaemonProcess& d, const std::string& path, const json& body, std::string method = "POST") {
  SseRequest req;
  req.method = std::move(method);
  req.path = path;
  req.body = body.dump();
  req.timeout = std::chrono::seconds(90);
  req.headers.emplace("X-EXECD-ACCESS-TOKEN", kToken);
  return sse_request(d.port(), req);
}

// A context with `fields`; its id.
std::string create(const DaemonProcess& d, json fields) {
  fields["language"] = "python";
  auto r = post(d, "/code/context", fields);
  INFO(r.raw);
  REQUIRE(r.status == 200);
  return json::parse(r.raw)["id"];
}

SseResponse run(const DaemonProcess& d, const std::string& id, const std::string& code) {
  return post(d, "/code", {{"code", code}, {"context", {{"id", id}}}});
}

std::string stdout_of(const SseResponse& r) {
  std::string out;
  for (const auto& e : r.of_type("stdout")) out += e.json.value("text", "");
  return out;
}

std::string error_text(const SseResponse& r) {
  std::string out;
  for (const auto& e : r.of_type("error")) out += e.json.dump();
  return out;
}

// Live kernel processes (bwrap or the kernel itself) whose connection file is under `base`.
int kernels_under(const std::string& base) {
  int n = 0;
  for (const auto& p : processes()) {
    if (p.state != 'Z' && p.cmdline.find(base + "/") != std::string::npos &&
        p.cmdline.find("connection.json") != std::string::npos) {
      ++n;
    }
  }
  return n;
}

// Kernel runtime directories and workspaces left under `base`.
int kernel_dirs(const std::string& base) {
  int n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(base, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // A runtime directory, or a fresh namespace-level workspace (<runtime>/workspaces/*).
    if (name.rfind("execd-kernel-", 0) == 0 || it->path().parent_path().filename() == "workspaces") ++n;
  }
  return n;
}

const char* kProbe =
    "import os\n"
    "print('secret' if any('" "hunter2" "' in v for v in os.environ.values()) else 'clean')\n"
    "print('token' if any('tok-code' in v for v in os.environ.values()) else 'notoken')\n"
    "print('envs=' + os.environ.get('FROM_ENVS_FILE', '-'))\n"
    "print([l for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0].split()[1])\n"
    "print('cgroup' if 'execd-' in open('/proc/self/cgroup').read() else 'nocgroup')\n";

}  // namespace

TEST_CASE("/code/context: the isolation fields are validated like /command's, 400 naming the field") {
  DaemonProcess d({}, {std::string("EXECD_ACCESS_TOKEN=") + kToken});
  auto bad = [&](json body, const std::string& field) {
    body["language"] = "python";
    auto r = post(d, "/code/context", body);
    INFO(r.raw);
    CHECK(r.status == 400);
    CHECK(r.raw.find(field) != std::string::npos);
  };
  bad({{"isolation", "container"}}, "isolation");
  bad({{"memory_limit_mb", -5}}, "memory_limit_mb");
  bad({{"max_processes", "many"}}, "max_processes");
  bad({{"network", "off"}}, "network");
  bad({{"network", false}}, "namespace");
}

TEST_CASE("process level: own cgroup, clean environment, no_new_privs; the flag's default; OOM named and restarted") {
  TempDir tmp;
  const std::string envs = tmp.str() + "/envs";
  std::ofstream(envs) << "FROM_ENVS_FILE=yes\n";
  DaemonProcess d({"--envs-file", envs, "--isolation", "process"},
                  {std::string("EXECD_ACCESS_TOKEN=") + kToken, std::string("SECRET_X=") + kSecret});
  // An unisolated context first: the warm pool fills with level-none kernels.
  const auto plain = create(d, {{"isolation", "none"}});
  CHECK(stdout_of(run(d, plain, kProbe)).find("nocgroup") != std::string::npos);
  std::this_thread::sleep_for(std::chrono::seconds(3));

  // No fields: the daemon's default (--isolation process), never a pooled kernel.
  const auto def = create(d, json::object());
  const auto out = stdout_of(run(d, def, kProbe));
  CAPTURE(out);
  CHECK(out == "clean\nnotoken\nenvs=yes\n1\ncgroup\n");

  const auto id = create(d, {{"isolation", "process"}, {"memory_limit_mb", 150}});
  CHECK(stdout_of(run(d, id, kProbe)) == "clean\nnotoken\nenvs=yes\n1\ncgroup\n");
  auto oom = run(d, id, "x = b'x' * (600 * 1024 * 1024)\nprint(len(x))");
  CAPTURE(oom.raw);
  CHECK(error_text(oom).find("memory") != std::string::npos);
  CHECK(error_text(oom).find("150") != std::string::npos);
  auto again = run(d, id, "print(1+1)");
  CHECK(stdout_of(again) == "2\n");
  CHECK(again.raw.find("kernel restarted") != std::string::npos);

  for (const auto& c : {plain, def, id}) CHECK(post(d, "/code/contexts/" + c, json::object(), "DELETE").status == 200);
  CHECK(within(std::chrono::seconds(5), [&] { return daemon_cgroups(d.pid(), "k-").empty(); }));
  CAPTURE(daemon_cgroups(d.pid(), "k-"));
}

TEST_CASE("namespace level: ipc transport, read-only system, no secrets, no network, interrupts reach it, nothing left") {
  TempDir base;
  DaemonProcess d({"--runtime-base", base.str()},
                  {std::string("EXECD_ACCESS_TOKEN=") + kToken, std::string("SECRET_X=") + kSecret});
  const auto t0 = std::chrono::steady_clock::now();
  const auto id = create(d, {{"isolation", "namespace"}});
  MESSAGE("namespace context created in "
          << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count() << " ms");
  auto two = run(d, id, "1+1");
  REQUIRE(two.of_type("result").size() == 1);
  CHECK(two.of_type("result")[0].json["results"]["text"] == "2");
  CHECK(kernels_under(base.str()) > 0);
  CHECK(kernel_dirs(base.str()) >= 2);  // the check below can see what it looks for

  auto ro = run(d, id, "open('/usr/x', 'w')");
  CHECK(error_text(ro).find("Read-only file system") != std::string::npos);
  const auto env = stdout_of(run(d, id, kProbe));
  CHECK(env.rfind("clean\nnotoken\n", 0) == 0);
  const auto net = stdout_of(run(d, id,
                                 "import socket\ntry:\n  socket.create_connection(('127.0.0.1', " + std::to_string(d.port()) +
                                     "), timeout=2)\n  print('REACHED')\nexcept OSError as e:\n  print('refused', e)\n"));
  CAPTURE(net);
  CHECK(net.rfind("refused", 0) == 0);

  // An interrupt reaches the kernel inside the sandbox (bwrap itself is not signalled).
  std::thread interrupter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    post(d, "/code?id=" + id, json::object(), "DELETE");
  });
  const auto t1 = std::chrono::steady_clock::now();
  auto slept = run(d, id, "import time\ntime.sleep(30)");
  interrupter.join();
  CHECK(std::chrono::steady_clock::now() - t1 < std::chrono::seconds(5));
  CHECK(error_text(slept).find("KeyboardInterrupt") != std::string::npos);
  CHECK(stdout_of(run(d, id, "print('alive')")) == "alive\n");

  CHECK(post(d, "/code/contexts/" + id, json::object(), "DELETE").status == 200);
  CHECK(within(std::chrono::seconds(5), [&] { return kernels_under(base.str()) == 0; }));
  CHECK(within(std::chrono::seconds(5), [&] { return daemon_cgroups(d.pid(), "k-").empty(); }));
  CHECK(within(std::chrono::seconds(5), [&] { return kernel_dirs(base.str()) == 0; }));
}

TEST_CASE("per-cell limits: output past max_output_bytes and a cell's CPU past cpu_time_limit_s interrupt the cell; the kernel lives on") {
  DaemonProcess d({}, {std::string("EXECD_ACCESS_TOKEN=") + kToken});
  const auto id = create(d, {{"isolation", "process"}, {"max_output_bytes", 10000}, {"cpu_time_limit_s", 2}});
  CHECK(stdout_of(run(d, id, "x = 41\nprint('set')")) == "set\n");

  // A flood: what arrives stays under the cap, the stream says why it stopped, the cell
  // is interrupted (it would print for minutes) and its terminal event names the limit.
  auto t0 = std::chrono::steady_clock::now();
  auto flood = run(d, id, "for i in range(10**8):\n    print('y' * 99)");
  CAPTURE(flood.raw.substr(0, 2000));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
  const auto flooded = stdout_of(flood);
  CHECK(flooded.size() > 1000);
  CHECK(flooded.size() <= 10000);
  CHECK(flood.raw.find("max_output_bytes") != std::string::npos);
  CHECK(error_text(flood).find("CellLimitExceeded") != std::string::npos);
  CHECK(error_text(flood).find("\"limit\":\"output\"") != std::string::npos);
  // Its state survived: no restart.
  auto after = run(d, id, "print(x + 1)");
  CHECK(stdout_of(after) == "42\n");
  CHECK(after.raw.find("kernel restarted") == std::string::npos);

  // The CPU limit is per cell, not the kernel's lifetime (RLIMIT_CPU would have ended the
  // kernel on the second of these, after its own start-up's CPU).
  const std::string burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.2: pass\nprint('ok')";
  for (int i = 0; i < 2; ++i) {
    auto r = run(d, id, burn);
    CAPTURE(r.raw);
    CHECK(stdout_of(r) == "ok\n");
    CHECK(error_text(r).empty());
  }

  // A spinning cell is interrupted at the limit; the kernel keeps its state.
  t0 = std::chrono::steady_clock::now();
  auto spin = run(d, id, "while True: pass");
  CAPTURE(spin.raw);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(15));
  CHECK(error_text(spin).find("cpu_time_limit_s") != std::string::npos);
  CHECK(error_text(spin).find("KeyboardInterrupt") != std::string::npos);
  CHECK(stdout_of(run(d, id, "print(x)")) == "41\n");

  // One that ignores the interrupt loses its kernel after the grace; the next cell gets a new one.
  auto stubborn = run(d, id, "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass");
  CAPTURE(stubborn.raw);
  CHECK(error_text(stubborn).find("KernelKilledByLimit") != std::string::npos);
  CHECK(error_text(stubborn).find("cpu_time_limit_s") != std::string::npos);
  auto fresh = run(d, id, "print('again')");
  CHECK(stdout_of(fresh) == "again\n");
  CHECK(fresh.raw.find("kernel restarted") != std::string::npos);

  CHECK(post(d, "/code/contexts/" + id, json::object(), "DELETE").status == 200);
  CHECK(within(std::chrono::seconds(5), [&] { return daemon_cgroups(d.pid(), "k-").empty(); }));
}
