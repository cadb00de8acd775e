// A sandbox the engine cannot remove for a while, on the real process backend (and a
// real private dockerd): the
// gateway reports it Failed/remove_failed with the attempt count, retries with backoff on
// its own (and after a restart), a DELETE retries at once, and once the obstacle is gone
// the sandbox ends as the remove was meant to with nothing left: no process, no cgroup,
// no directory, no container, no network. The obstacles are real ones, found by trying: a
// child cgroup someone made inside the sandbox's cgroup (rmdir says EBUSY), a mount inside
// the sandbox's directory (its rmdir says EBUSY too), and a container someone attached to
// a docker sandbox's network (the engine refuses to remove a network with endpoints).
#include <doctest/doctest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "integration/gateway_execd_bundle_dir.hpp"  // EXECD_BUNDLE_DIR: make_bundle.sh's layout of this build's execd
#include "integration/gateway_harness.hpp"
#include "support/daemon_process.hpp"
#include "support/private_dockerd.hpp"
#include "support/proc_probe.hpp"
#include "support/temp_dir.hpp"

using execd::test::PrivateDockerd;
using execd::test::shell_output;
using execd::test::TempDir;
using execd::test::within;
using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kApiKey = "retry-key-7";

/// Whatever of sandbox `id` is still on the machine: its directory, its keeper, its cgroups.
std::string leftovers(const std::string& state_dir, const std::string& id) {
  std::string left;
  if (fs::exists(state_dir + "/sandboxes/" + id)) left += "directory; ";
  left += shell_output("pgrep -f '[e]xecd-sandbox-keeper " + state_dir + "/sandboxes/" + id + "/' || true");
  left += shell_output("find /sys/fs/cgroup/*/ -maxdepth 4 -type d -name '*" + id + "*' 2>/dev/null || true");
  return left;
}

std::string status_message(const gateway_harness::Gateway& gw, const std::string& id) {
  return gw.sandbox(id)["status"]["message"];
}

/// Polls until the sandbox's status message contains `needle`; the test fails after `limit`.
json wait_message(const gateway_harness::Gateway& gw, const std::string& id, const std::string& needle,
                  std::chrono::milliseconds limit = 30s) {
  json s;
  const bool seen = within(
      limit,
      [&] {
        s = gw.sandbox(id);
        return s["status"]["message"].get<std::string>().find(needle) != std::string::npos;
      },
      100ms);
  INFO("last seen: " << s.dump());
  INFO("gateway log: " << gw.log());
  REQUIRE_MESSAGE(seen, "status message never said '" << needle << "'");
  return s;
}

/// The value of a sample line of GET /metrics, e.g. gateway_sandboxes_remove_pending{backend="process"}.
std::string metric(const gateway_harness::Gateway& gw, const std::string& sample) {
  auto r = gw.get("/metrics");
  REQUIRE(r);
  const size_t at = r->body.find("\n" + sample + " ");
  if (at == std::string::npos) return "(absent)";
  const size_t from = at + sample.size() + 2;
  return r->body.substr(from, r->body.find('\n', from) - from);
}

/// Runs `undo` when the test leaves, however it leaves: an obstacle never outlives it.
struct Undo {
  std::function<void()> undo;
  ~Undo() {
    if (undo) undo();
  }
};

}  // namespace

TEST_CASE("process backend: a remove refused by a busy cgroup is retried with backoff until it succeeds") {
  TempDir dir;
  gateway_harness::Gateway gw(dir.str(), kApiKey, {"--backend", "process"});
  const std::string id = gw.create({{"image", {{"uri", "host"}}}, {"timeout", 600}})["id"];
  gw.wait_state(id, "Running");

  // Someone made a group inside the sandbox's pids cgroup: rmdir of the sandbox's group
  // fails with EBUSY as long as it is there.
  const std::string group =
      execd::test::shell_output("find /sys/fs/cgroup/pids/ -maxdepth 4 -type d -name '" + id + "' | head -1");
  REQUIRE_MESSAGE(!group.empty(), "no pids cgroup for sandbox " << id);
  const std::string child = group.substr(0, group.find('\n')) + "/held-from-outside";
  REQUIRE(fs::create_directory(child));
  Undo unblock{[&] {
    ::rmdir(child.c_str());
    gw.del("/v1/sandboxes/" + id);  // a final row the harness's cleanup would skip
  }};

  auto deleted = gw.del("/v1/sandboxes/" + id);
  REQUIRE(deleted);
  INFO(deleted->body);
  CHECK(deleted->status == 503);
  const json error = json::parse(deleted->body);
  CHECK(error["code"] == "UNAVAILABLE");
  CHECK(error["message"].get<std::string>().find("remove attempt 1 failed") != std::string::npos);
  CHECK(error["message"].get<std::string>().find("still busy") != std::string::npos);
  CHECK(error["message"].get<std::string>().find("next attempt in 1 s") != std::string::npos);

  const json failed = gw.sandbox(id);
  CHECK(failed["status"]["state"] == "Failed");
  CHECK(failed["status"]["reason"] == "remove_failed");
  // Its processes went with the first attempt (kill_all); only the group stays.
  CHECK(shell_output("pgrep -f '[e]xecd-sandbox-keeper " + dir.str() + "/sandboxes/" + id + "/' || true").empty());

  // The reaper tries again on its own, the wait doubling: 1 s, then 2 s.
  const auto t0 = std::chrono::steady_clock::now();
  wait_message(gw, id, "remove attempt 2 failed");
  wait_message(gw, id, "remove attempt 3 failed");
  const auto two_retries = std::chrono::steady_clock::now() - t0;
  CHECK(status_message(gw, id).find("next attempt in 4 s") != std::string::npos);
  // 1 s + 2 s of backoff (plus each attempt's own second of rmdir retries): not a tight loop.
  CHECK(two_retries >= 2500ms);
  CHECK(gw.sandbox(id)["status"]["reason"] == "remove_failed");
  CHECK(metric(gw, "gateway_sandboxes_remove_pending{backend=\"process\"}") == "1");
  CHECK(metric(gw, "gateway_sandbox_remove_failures_total{backend=\"process\"}") == "3");

  // The obstacle goes. The next automatic attempt is 4 s away: a DELETE now tries at once,
  // removes everything and ends the sandbox as the first delete meant.
  REQUIRE(::rmdir(child.c_str()) == 0);
  auto retried = gw.del("/v1/sandboxes/" + id);
  REQUIRE(retried);
  INFO(retried->body);
  CHECK(retried->status == 204);
  const json ended = gw.sandbox(id);
  CHECK(ended["status"]["state"] == "Terminated");
  CHECK(ended["status"]["reason"] == "user_delete");
  CHECK(ended["status"]["message"].get<std::string>().find("removed on attempt 4, after 3 failed") !=
        std::string::npos);
  CHECK(leftovers(dir.str(), id).empty());
  CAPTURE(leftovers(dir.str(), id));
  CHECK(metric(gw, "gateway_sandboxes_remove_pending{backend=\"process\"}") == "0");
  CHECK(metric(gw, "gateway_sandbox_deletes_total{backend=\"process\"}") == "1");  // one delete, however many attempts
  // Final now: a second DELETE is the ordinary conflict.
  auto again = gw.del("/v1/sandboxes/" + id);
  REQUIRE(again);
  CHECK(again->status == 409);
}

TEST_CASE(
    "process backend: an expiry whose remove fails is retried across gateway restarts; give-up stops it, a DELETE "
    "still tries, a restart without give-up resumes") {
  TempDir dir;
  gateway_harness::Gateway gw(dir.str(), kApiKey, {"--backend", "process"});
  const std::string id = gw.create({{"image", {{"uri", "host"}}}, {"timeout", 4}})["id"];
  gw.wait_state(id, "Running");

  // A mount inside the sandbox's directory (as a tool that mounted something there
  // would leave): removing the directory empties it and then fails with EBUSY.
  const std::string mountpoint = dir.str() + "/sandboxes/" + id + "/held-mount";
  REQUIRE(fs::create_directory(mountpoint));
  REQUIRE(::mount("tmpfs", mountpoint.c_str(), "tmpfs", 0, "size=1m") == 0);
  Undo unblock{[&] {
    ::umount2(mountpoint.c_str(), MNT_DETACH);
    if (gw.is_up()) gw.del("/v1/sandboxes/" + id);
  }};

  // It expires; its remove fails.
  const json failed = wait_message(gw, id, "remove attempt 1 failed");
  CHECK(failed["status"]["state"] == "Failed");
  CHECK(failed["status"]["reason"] == "remove_failed");
  CHECK(failed["status"]["message"].get<std::string>().find("Device or resource busy") != std::string::npos);

  // A gateway killed and started again still has the row and keeps retrying it; this one
  // is told to give up on removes failing for longer than 1 ms, so its first retry is its last.
  gw.kill();
  gw.start({"--remove-give-up", "1ms"});
  const json given_up = wait_message(gw, id, "no more automatic attempts");
  CHECK(given_up["status"]["reason"] == "remove_failed");
  const std::string at_give_up = given_up["status"]["message"];
  CHECK(at_give_up.find("remove attempt 2 failed") != std::string::npos);
  std::this_thread::sleep_for(3s);
  CHECK(status_message(gw, id) == at_give_up);  // no more attempts on its own

  // A DELETE tries at once, and says what that attempt did.
  auto refused = gw.del("/v1/sandboxes/" + id);
  REQUIRE(refused);
  INFO(refused->body);
  CHECK(refused->status == 503);
  CHECK(json::parse(refused->body)["message"].get<std::string>().find("remove attempt 3 failed") != std::string::npos);

  // Started again without a give-up, the gateway resumes the retries on its own: the next
  // one is due 4 s after the DELETE's attempt.
  gw.kill();
  gw.start();
  wait_message(gw, id, "remove attempt 4 failed");
  CHECK(status_message(gw, id).find("next attempt in 8 s") != std::string::npos);

  // The mount goes; the next retry removes everything and ends it as the expiry meant.
  REQUIRE(::umount2(mountpoint.c_str(), 0) == 0);
  const json ended = gw.wait_state(id, "Terminated", 30s);
  CHECK(ended["status"]["reason"] == "ttl_expiry");
  CHECK(ended["status"]["message"].get<std::string>().find("removed on attempt 5, after 4 failed") !=
        std::string::npos);
  CHECK(leftovers(dir.str(), id).empty());
  CAPTURE(leftovers(dir.str(), id));
}

TEST_CASE(
    "docker backend: a network the engine will not remove (a container attached from outside) is retried until it "
    "goes") {
  PrivateDockerd dockerd;
  constexpr const char* kImage = "execd-gw-busybox:latest";
  dockerd.import_busybox_image(kImage);
  auto docker = [&](const std::string& args) {
    return shell_output("DOCKER_HOST=" + dockerd.host() + " docker " + args + " 2>&1");
  };
  TempDir dir;
  gateway_harness::Gateway gw(
      dir.str(), kApiKey, {"--backend", "docker", "--docker-host", dockerd.host(), "--execd-bundle", EXECD_BUNDLE_DIR,
                                   "--docker-host-firewall", "off"});
  const std::string id = gw.create({{"image", {{"uri", kImage}}}, {"timeout", 600}})["id"];
  gw.wait_state(id, "Running");

  // Someone attaches a container of their own to the sandbox's network (to debug it, say):
  // the engine then refuses to remove the network ("has active endpoints").
  const std::string intruder = "intruder-" + id.substr(0, 8);
  const std::string started =
      docker("run -d --name " + intruder + " --network execd-" + id + " " + kImage + " sleep 600");
  REQUIRE_MESSAGE(docker("ps -q --filter name=" + intruder).size() > 0, started);
  Undo unblock{[&] {
    docker("rm -f " + intruder);
    gw.del("/v1/sandboxes/" + id);
  }};

  auto deleted = gw.del("/v1/sandboxes/" + id);
  REQUIRE(deleted);
  INFO(deleted->body);
  CHECK(deleted->status == 503);
  CHECK(json::parse(deleted->body)["message"].get<std::string>().find("remove attempt 1 failed") != std::string::npos);
  CHECK(json::parse(deleted->body)["message"].get<std::string>().find("active endpoints") != std::string::npos);
  CHECK(gw.sandbox(id)["status"]["reason"] == "remove_failed");
  // The sandbox's container went with the first attempt; its network stays.
  CHECK(docker("ps -a -q --filter label=io.execd.sandbox=" + id).empty());
  CHECK_FALSE(docker("network ls -q --filter name=execd-" + id).empty());
  wait_message(gw, id, "remove attempt 2 failed");

  CHECK(docker("rm -f " + intruder).find(intruder) != std::string::npos);
  const json ended = gw.wait_state(id, "Terminated", 30s);
  CHECK(ended["status"]["reason"] == "user_delete");
  CHECK(ended["status"]["message"].get<std::string>().find("removed on attempt") != std::string::npos);
  CHECK(docker("ps -a -q --filter label=io.execd.sandbox=" + id).empty());
  CHECK(docker("network ls -q --filter name=execd-" + id).empty());
}
