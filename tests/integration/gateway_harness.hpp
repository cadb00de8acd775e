// Shared by the overflow and replicas tests: a real build/execd-gateway on loopback with
// the process backend, driven over HTTP. Header-only: each test executable includes it once.
#pragma once

#include <doctest/doctest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/daemon_process.hpp"
#include "support/proc_probe.hpp"
#include "support/temp_dir.hpp"

namespace gateway_harness {

using nlohmann::json;
using namespace std::chrono_literals;

// SIGKILLs what runs below the process backend's keepers whose command line names
// `prefix` (as gateway_test.cpp does): whatever a failed check left behind.
inline std::string kill_keepers_under(const std::string& prefix) {
  return execd::test::kill_below_keepers_command(prefix, /*keepers_too=*/true);
}

/// One execd-gateway. `dir` is its --state-dir (sandboxes live under dir/sandboxes);
/// `args` are added to the defaults. start() again after kill() is a restart on the same
/// state (and the same port when `--port N` is in args).
class Gateway {
 public:
  Gateway(std::string dir, std::string api_key, std::vector<std::string> args)
      : dir_(std::move(dir)), api_key_(std::move(api_key)), args_(std::move(args)) {
    start();
  }
  ~Gateway() {
    if (daemon_) {
      cleanup();
      daemon_->stop(SIGTERM, 10s);
    }
  }
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  void start(const std::vector<std::string>& more = {}) {
    const char* execd = std::getenv("EXECD_BIN");
    REQUIRE(execd != nullptr);
    std::vector<std::string> a = {
        "--api-key", api_key_, "--state-dir", dir_, "--execd-bin", execd, "--sandbox-start-timeout", "30s"};
    a.insert(a.end(), args_.begin(), args_.end());
    a.insert(a.end(), more.begin(), more.end());
    daemon_ =
        std::make_unique<execd::test::DaemonProcess>(a, std::vector<std::string>{}, execd::test::Program::gateway);
  }
  /// SIGKILL: the gateway dies, its sandboxes keep running.
  void kill() {
    REQUIRE(daemon_);
    daemon_->stop(SIGKILL, 10s);
    daemon_.reset();
  }
  /// Deletes (through the API) every sandbox this gateway lists live.
  void cleanup() {
    auto list = get("/v1/sandboxes?pageSize=1000");
    if (!list || list->status != 200) return;
    const json listed = json::parse(list->body);  // named: never iterate a temporary's member
    for (const auto& s : listed["items"]) {
      const std::string state = s["status"]["state"];
      if (state != "Terminated" && state != "Failed") del("/v1/sandboxes/" + s["id"].get<std::string>());
    }
  }

  [[nodiscard]] bool is_up() const { return daemon_ != nullptr; }
  [[nodiscard]] int port() const { return daemon_->port(); }
  [[nodiscard]] pid_t pid() const { return daemon_->pid(); }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  [[nodiscard]] const std::string& dir() const { return dir_; }
  [[nodiscard]] std::string log() const { return daemon_ ? daemon_->log() : std::string("(not running)"); }

  [[nodiscard]] std::unique_ptr<httplib::Client> client() const {
    auto c = daemon_->client();
    c->set_default_headers({{"OPEN-SANDBOX-API-KEY", api_key_}});
    return c;
  }
  httplib::Result get(const std::string& path) const { return client()->Get(path); }
  httplib::Result post(const std::string& path, const std::string& body) const {
    return client()->Post(path, body, "application/json");
  }
  httplib::Result del(const std::string& path) const { return client()->Delete(path); }
  httplib::Result patch(const std::string& path, const std::string& body) const {
    return client()->Patch(path, body, "application/json");
  }

  /// POST /v1/sandboxes; REQUIREs the 202 and returns the answer.
  json create(const json& body) const {
    auto r = post("/v1/sandboxes", body.dump());
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 202);
    return json::parse(r->body);
  }
  json sandbox(const std::string& id) const {
    auto r = get("/v1/sandboxes/" + id);
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
  }
  /// Polls until the sandbox is in `state` (the test fails after `timeout`).
  json wait_state(const std::string& id, const std::string& state, std::chrono::milliseconds timeout = 60s) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json s;
    while (std::chrono::steady_clock::now() < deadline) {
      s = sandbox(id);
      if (s["status"]["state"] == state) return s;
      std::this_thread::sleep_for(50ms);
    }
    INFO("last seen: " << s.dump());
    INFO("gateway log: " << log());
    FAIL("sandbox " << id << " did not become " << state);
    return s;
  }

 private:
  std::string dir_;
  std::string api_key_;
  std::vector<std::string> args_;
  std::unique_ptr<execd::test::DaemonProcess> daemon_;
};

/// A 50 MB body that is not all one byte (a cut or a shifted piece shows).
inline std::string pattern_bytes(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 2463534242u;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(x & 0xff);
  }
  return s;
}

}  // namespace gateway_harness
