// The lifecycle service over the real process backend (bubblewrap, cgroups, the real
// execd): its state machine, capacity, reconcile at start and counters.
#include "gateway/sandbox_service.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <thread>

#include "gateway/backends/process_backend.hpp"
#include "support/temp_dir.hpp"

using namespace execd::gateway;
using execd::core::Errc;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string execd_bin() {
  if (const char* env = std::getenv("EXECD_BIN"); env != nullptr && *env != '\0') return env;
  return (fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "execd").string();
}

std::shared_ptr<ProcessBackend> backend_in(const std::string& dir) {
  ProcessBackend::Options o;
  o.execd_binary = execd_bin();
  o.state_dir = dir + "/sandboxes";
  auto b = ProcessBackend::open(o);
  REQUIRE_MESSAGE(b.ok(), (b.ok() ? "" : b.error().message));
  return std::shared_ptr<ProcessBackend>(std::move(b).value());
}

std::unique_ptr<SandboxService> service_in(const std::string& dir, ServiceOptions o = {}) {
  auto store = SandboxStore::open(dir + "/gateway.db");
  REQUIRE_MESSAGE(store.ok(), (store.ok() ? "" : store.error().message));
  o.reap_interval = 100ms;
  auto s = std::make_unique<SandboxService>(backend_in(dir), std::move(store).value(), o);
  REQUIRE(s->start().ok());
  return s;
}

SandboxSpec host() {
  SandboxSpec s;
  s.image = "host";
  return s;
}

Sandbox wait_for(SandboxService& s, const std::string& id, SandboxState state) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto got = s.get(id);
    REQUIRE(got.ok());
    if (got->state == state) return *got;
    std::this_thread::sleep_for(20ms);
  }
  auto got = s.get(id);
  FAIL("sandbox " << id << " is " << to_string(got->state) << " (" << got->message << "), not " << to_string(state));
  return *got;
}

}  // namespace

TEST_CASE("service: Pending -> Running -> Paused -> Running -> Terminated, wrong-state calls are conflicts") {
  execd::test::TempDir dir;
  auto svc = service_in(dir.str());
  auto created = svc->create(host());
  REQUIRE(created.ok());
  CHECK(created->state == SandboxState::pending);
  CHECK(created->access_token.size() == 64);
  const std::string id = created->id;
  const Sandbox running = wait_for(*svc, id, SandboxState::running);
  CHECK_FALSE(running.placement.handle.empty());

  CHECK(svc->resume(id).error().code == Errc::conflict);
  REQUIRE(svc->pause(id).ok());
  CHECK(svc->get(id)->state == SandboxState::paused);
  CHECK(svc->pause(id).error().code == Errc::conflict);
  REQUIRE(svc->resume(id).ok());
  CHECK(svc->get(id)->state == SandboxState::running);

  CHECK(svc->renew(id, std::chrono::system_clock::now() - 1s).error().code == Errc::invalid_argument);
  REQUIRE(svc->renew(id, std::chrono::system_clock::now() + 1h).ok());
  auto addr = svc->address(id, SandboxService::kExecdPort);
  REQUIRE(addr.ok());
  CHECK(addr->port == running.placement.port);

  REQUIRE(svc->remove(id).ok());
  const Sandbox ended = svc->get(id).value();
  CHECK(ended.state == SandboxState::terminated);
  CHECK(ended.reason == "user_delete");
  CHECK(svc->remove(id).error().code == Errc::conflict);
  CHECK(svc->renew(id, std::chrono::system_clock::now() + 1h).error().code == Errc::conflict);
  CHECK(svc->address(id, 8080).error().code == Errc::conflict);
  CHECK(svc->get("nope").error().code == Errc::not_found);

  const ServiceCounters c = svc->counters();
  CHECK(c.creates == 1);
  CHECK(c.deletes == 1);
  CHECK(c.latency_count == 1);
  CHECK(c.by_state.at(SandboxState::terminated) == 1);
}

TEST_CASE("service: --max-sandboxes is a capacity error naming the limit; a bad spec is refused before any start") {
  execd::test::TempDir dir;
  ServiceOptions o;
  o.max_sandboxes = 1;
  auto svc = service_in(dir.str(), o);
  auto first = svc->create(host());
  REQUIRE(first.ok());
  auto second = svc->create(host());
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().code == Errc::capacity);
  CHECK(second.error().message.find("max-sandboxes") != std::string::npos);
  SandboxSpec bad = host();
  bad.image = "no-such-image";
  CHECK(svc->create(bad).error().code == Errc::invalid_argument);
  bad = host();
  bad.metadata["opensandbox.io/x"] = "y";
  CHECK(svc->create(bad).error().code == Errc::invalid_argument);
  wait_for(*svc, first->id, SandboxState::running);
  REQUIRE(svc->remove(first->id).ok());
  auto third = svc->create(host());  // a final sandbox no longer counts
  REQUIRE(third.ok());
  wait_for(*svc, third->id, SandboxState::running);
  REQUIRE(svc->remove(third->id).ok());
}

TEST_CASE("service: a new service on the same table serves what still runs and fails what is gone") {
  execd::test::TempDir dir;
  std::string kept;
  std::string killed;
  Placement killed_at;
  {
    auto svc = service_in(dir.str());
    kept = svc->create(host())->id;
    killed = svc->create(host())->id;
    wait_for(*svc, kept, SandboxState::running);
    killed_at = wait_for(*svc, killed, SandboxState::running).placement;
    svc->stop();
  }
  // While no service runs, one sandbox's instance is removed behind its back.
  REQUIRE(backend_in(dir.str())->remove(killed_at).ok());
  auto svc = service_in(dir.str());
  CHECK(svc->get(kept)->state == SandboxState::running);
  const Sandbox gone = svc->get(killed).value();
  CHECK(gone.state == SandboxState::failed);
  CHECK(gone.reason == "instance_gone");
  REQUIRE(svc->remove(kept).ok());
}
