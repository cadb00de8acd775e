#include "gateway/sandbox_store.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include "support/temp_dir.hpp"

using namespace execd::gateway;
using namespace std::chrono_literals;

namespace {

SandboxRow sample(const std::string& id, SandboxState state) {
  SandboxRow r;
  Sandbox& s = r.sandbox;
  s.id = id;
  s.backend = "process";
  s.spec.image = "host";
  s.spec.entrypoint = {"sleep", "infinity"};
  s.spec.timeout = 600s;
  s.spec.limits = {500, 256ull << 20, 64, 1ull << 30};
  s.spec.env = {{"A", "1"}, {"B", "two words"}};
  s.spec.metadata = {{"team", "ml"}};
  s.state = state;
  s.reason = "provisioning";
  s.message = "starting";
  // Whole milliseconds: the table keeps milliseconds.
  const auto now = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  s.created_at = now;
  s.updated_at = now + 1ms;
  s.last_transition_at = now + 2ms;
  s.expires_at = now + 600s;
  s.access_token = "ab12";
  s.placement = {"pid:1:2", "127.0.0.1", 40123};
  return r;
}

}  // namespace

TEST_CASE("every field of a row survives closing and reopening the file") {
  execd::test::TempDir dir;
  const std::string path = dir.str() + "/state.db";
  const SandboxRow original = sample("sbx1", SandboxState::running);
  {
    auto store = SandboxStore::open(path);
    REQUIRE(store.ok());
    REQUIRE((*store)->put(original).ok());
    SandboxRow pooled = sample("sbx2", SandboxState::running);
    pooled.is_pooled = true;
    pooled.sandbox.expires_at.reset();
    pooled.sandbox.spec.timeout.reset();
    REQUIRE((*store)->put(pooled).ok());
  }
  auto store = SandboxStore::open(path);
  REQUIRE(store.ok());
  auto rows = (*store)->load_all();
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 2);
  const auto& back = (*rows)[0].sandbox;
  const auto& want = original.sandbox;
  CHECK(back.id == "sbx1");
  CHECK(back.backend == want.backend);
  CHECK(back.state == SandboxState::running);
  CHECK(back.reason == want.reason);
  CHECK(back.message == want.message);
  CHECK(back.created_at == want.created_at);
  CHECK(back.updated_at == want.updated_at);
  CHECK(back.last_transition_at == want.last_transition_at);
  CHECK(back.expires_at == want.expires_at);
  CHECK(back.access_token == want.access_token);
  CHECK(back.placement.handle == want.placement.handle);
  CHECK(back.placement.host == want.placement.host);
  CHECK(back.placement.port == want.placement.port);
  CHECK(back.spec.image == want.spec.image);
  CHECK(back.spec.entrypoint == want.spec.entrypoint);
  CHECK(back.spec.timeout == want.spec.timeout);
  CHECK(back.spec.env == want.spec.env);
  CHECK(back.spec.metadata == want.spec.metadata);
  CHECK(back.spec.limits.cpu_millis == 500);
  CHECK(back.spec.limits.memory_bytes == 256ull << 20);
  CHECK(back.spec.limits.max_pids == 64);
  CHECK(back.spec.limits.disk_bytes == 1ull << 30);
  CHECK_FALSE((*rows)[0].is_pooled);
  CHECK((*rows)[1].is_pooled);
  CHECK_FALSE((*rows)[1].sandbox.expires_at.has_value());
  CHECK_FALSE((*rows)[1].sandbox.spec.timeout.has_value());
}

TEST_CASE("put replaces a row; erase removes it; prune takes only old final rows") {
  auto store = SandboxStore::open(":memory:");
  REQUIRE(store.ok());
  auto& s = **store;
  auto live = sample("live", SandboxState::running);
  auto old_done = sample("old", SandboxState::terminated);
  old_done.sandbox.last_transition_at -= 2h;
  auto old_failed = sample("oldfail", SandboxState::failed);
  old_failed.sandbox.last_transition_at -= 2h;
  auto new_done = sample("new", SandboxState::terminated);
  for (const auto& r : {live, old_done, old_failed, new_done}) REQUIRE(s.put(r).ok());
  live.sandbox.state = SandboxState::paused;
  REQUIRE(s.put(live).ok());
  auto pruned = s.prune_final_before(std::chrono::system_clock::now() - 1h);
  REQUIRE(pruned.ok());
  CHECK(pruned->size() == 2);
  REQUIRE(s.erase("new").ok());
  REQUIRE(s.erase("never-there").ok());
  auto rows = s.load_all();
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 1);
  CHECK((*rows)[0].sandbox.id == "live");
  CHECK((*rows)[0].sandbox.state == SandboxState::paused);
}

TEST_CASE("a second store on the same file is refused while the first holds it") {
  execd::test::TempDir dir;
  const std::string path = dir.str() + "/state.db";
  auto first = SandboxStore::open(path);
  REQUIRE(first.ok());
  auto second = SandboxStore::open(path);
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().message.find("in use by another gateway") != std::string::npos);
  first.value().reset();
  CHECK(SandboxStore::open(path).ok());
}

TEST_CASE("the file is in WAL mode and a file of another schema version is refused") {
  execd::test::TempDir dir;
  const std::string path = dir.str() + "/state.db";
  REQUIRE(SandboxStore::open(path).ok());
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "wal");
  sqlite3_finalize(st);
  REQUIRE(sqlite3_exec(db, "UPDATE meta SET value='99' WHERE key='schema_version'", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  sqlite3_close(db);
  auto reopened = SandboxStore::open(path);
  REQUIRE_FALSE(reopened.ok());
  CHECK(reopened.error().message.find("schema version '99'") != std::string::npos);
}

TEST_CASE("a pending removal survives reopening, and its row is never pruned while it waits") {
  execd::test::TempDir dir;
  const std::string path = dir.str() + "/state.db";
  SandboxRow waiting = sample("waiting", SandboxState::failed);
  waiting.sandbox.reason = "remove_failed";
  waiting.sandbox.last_transition_at -= 2h;
  PendingRemoval r;
  r.attempts = 3;
  r.first_failed_at = waiting.sandbox.created_at;
  r.next_attempt_at = waiting.sandbox.created_at + 4s;
  r.has_given_up = true;
  r.last_error = "cannot remove cgroup /sys/fs/cgroup/pids/x: still busy";
  r.end_state = SandboxState::terminated;
  r.end_reason = "ttl_expiry";
  r.end_message = "expired and removed";
  waiting.removal = r;
  SandboxRow old_failed = sample("oldfail", SandboxState::failed);
  old_failed.sandbox.last_transition_at -= 2h;
  {
    auto store = SandboxStore::open(path);
    REQUIRE(store.ok());
    REQUIRE((*store)->put(waiting).ok());
    REQUIRE((*store)->put(old_failed).ok());
    auto pruned = (*store)->prune_final_before(std::chrono::system_clock::now() - 1h);
    REQUIRE(pruned.ok());
    CHECK(*pruned == std::vector<std::string>{"oldfail"});
  }
  auto store = SandboxStore::open(path);
  REQUIRE(store.ok());
  auto rows = (*store)->load_all();
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 1);
  REQUIRE((*rows)[0].removal.has_value());
  const PendingRemoval& back = *(*rows)[0].removal;
  CHECK(back.attempts == 3);
  CHECK(back.first_failed_at == r.first_failed_at);
  CHECK(back.next_attempt_at == r.next_attempt_at);
  CHECK(back.has_given_up);
  CHECK(back.last_error == r.last_error);
  CHECK(back.end_state == SandboxState::terminated);
  CHECK(back.end_reason == "ttl_expiry");
  CHECK(back.end_message == "expired and removed");
  // Once removed, the row is an ordinary final one again, and pruned like one.
  SandboxRow done = (*rows)[0];
  done.removal.reset();
  REQUIRE((*store)->put(done).ok());
  auto pruned = (*store)->prune_final_before(std::chrono::system_clock::now() - 1h);
  REQUIRE(pruned.ok());
  CHECK(*pruned == std::vector<std::string>{"waiting"});
}

TEST_CASE("a schema-1 file (before pending removals) is migrated and its rows kept") {
  execd::test::TempDir dir;
  const std::string path = dir.str() + "/state.db";
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  // Version 1's schema and one of its rows, as a gateway of that version wrote them.
  SandboxSpec spec;
  spec.image = "host";
  const std::string v1 =
      "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "INSERT INTO meta (key, value) VALUES ('schema_version', '1');"
      "CREATE TABLE sandboxes ("
      "  id TEXT PRIMARY KEY, backend TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,"
      "  message TEXT NOT NULL, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,"
      "  last_transition_ms INTEGER NOT NULL, expires_at_ms INTEGER, access_token TEXT NOT NULL,"
      "  handle TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, spec_json TEXT NOT NULL,"
      "  pooled INTEGER NOT NULL);"
      "INSERT INTO sandboxes VALUES ('old1', 'process', 'Failed', 'remove_failed', 'busy', 1000, 2000, 3000, NULL,"
      "  'tok', 'old1', '127.0.0.1', 40000, '" +
      spec_to_json(spec) + "', 0);";
  char* err = nullptr;
  const int rc = sqlite3_exec(db, v1.c_str(), nullptr, nullptr, &err);
  const std::string why = err != nullptr ? err : "";
  sqlite3_free(err);
  INFO(why);
  REQUIRE(rc == SQLITE_OK);
  sqlite3_close(db);

  auto store = SandboxStore::open(path);
  REQUIRE_MESSAGE(store.ok(), (store.ok() ? "" : store.error().message));
  auto rows = (*store)->load_all();
  REQUIRE_MESSAGE(rows.ok(), (rows.ok() ? "" : rows.error().message));
  REQUIRE(rows->size() == 1);
  CHECK((*rows)[0].sandbox.id == "old1");
  CHECK((*rows)[0].sandbox.reason == "remove_failed");
  CHECK((*rows)[0].sandbox.placement.port == 40000);
  CHECK_FALSE((*rows)[0].removal.has_value());
  SandboxRow again = (*rows)[0];
  again.removal = PendingRemoval{};
  again.removal->attempts = 1;
  REQUIRE((*store)->put(again).ok());
  store.value().reset();
  // The file now says version 2, and reads back as such.
  auto reopened = SandboxStore::open(path);
  REQUIRE(reopened.ok());
  auto after = (*reopened)->load_all();
  REQUIRE(after.ok());
  REQUIRE((*after)[0].removal.has_value());
  CHECK((*after)[0].removal->attempts == 1);
}
