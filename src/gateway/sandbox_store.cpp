#include "gateway/sandbox_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/json_parse.hpp"

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;
using nlohmann::json;

int64_t to_ms(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
TimePoint from_ms(int64_t ms) { return TimePoint(std::chrono::milliseconds(ms)); }

std::string column_text(sqlite3_stmt* st, int col) {
  const auto* p = sqlite3_column_text(st, col);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p));
}

/// Runs `sql` (several statements); nullopt on success, else SQLite's message.
std::optional<std::string> exec_script(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) == SQLITE_OK) return std::nullopt;
  std::string why = err != nullptr ? err : "unknown error";
  sqlite3_free(err);
  return why;
}

// Resets a statement whatever path leaves the call (bindings cleared too).
struct StatementReset {
  sqlite3_stmt* st;
  ~StatementReset() {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
};

constexpr const char* kColumns =
    "id, backend, state, reason, message, created_at_ms, updated_at_ms, last_transition_ms, expires_at_ms, "
    "access_token, handle, host, port, spec_json, pooled, removal_json";

// A pending removal as one JSON document (read and written whole, never queried; the
// column is NULL when there is none, which is what prune looks at).
std::string removal_to_json(const PendingRemoval& r) {
  return json{{"attempts", r.attempts},
              {"first_failed_ms", to_ms(r.first_failed_at)},
              {"next_attempt_ms", to_ms(r.next_attempt_at)},
              {"given_up", r.has_given_up},
              {"last_error", r.last_error},
              {"end_state", std::string(to_string(r.end_state))},
              {"end_reason", r.end_reason},
              {"end_message", r.end_message}}
      .dump();
}

core::Result<PendingRemoval> removal_from_json(const std::string& text) {
  auto parsed = core::parse_json(text);
  if (!parsed || !parsed->is_object()) return make_error(Errc::internal, "malformed removal_json");
  const json& j = *parsed;
  try {
    PendingRemoval r;
    r.attempts = j.at("attempts").get<uint32_t>();
    r.first_failed_at = from_ms(j.at("first_failed_ms").get<int64_t>());
    r.next_attempt_at = from_ms(j.at("next_attempt_ms").get<int64_t>());
    r.has_given_up = j.at("given_up").get<bool>();
    r.last_error = j.at("last_error").get<std::string>();
    auto end = parse_state(j.at("end_state").get<std::string>());
    if (!end) return make_error(Errc::internal, "removal_json: unknown end_state");
    r.end_state = *end;
    r.end_reason = j.at("end_reason").get<std::string>();
    r.end_message = j.at("end_message").get<std::string>();
    return r;
  } catch (const json::exception& e) {
    return make_error(Errc::internal, std::string("malformed removal_json: ") + e.what());
  }
}

}  // namespace

core::Result<std::unique_ptr<SandboxStore>> SandboxStore::open(const std::string& path) {
  std::unique_ptr<SandboxStore> store(new SandboxStore());
  if (path != ":memory:") {
    const std::string lock_path = path + ".lock";
    store->lock_fd_.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!store->lock_fd_.valid()) {
      return make_error(Errc::unavailable, "cannot open " + lock_path + ": " + std::strerror(errno));
    }
    if (flock(store->lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
      return make_error(Errc::unavailable, "state file " + path + " is in use by another gateway (" + lock_path +
                                               " is locked)");
    }
  }
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &store->db_, flags, nullptr) != SQLITE_OK) {
    std::string why = store->db_ != nullptr ? sqlite3_errmsg(store->db_) : "out of memory";
    return make_error(Errc::unavailable, "cannot open state file " + path + ": " + why);
  }
  sqlite3_busy_timeout(store->db_, 5000);
  const std::string schema =
      "PRAGMA journal_mode=WAL;"
      "PRAGMA synchronous=NORMAL;"
      "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '" + std::to_string(kSchemaVersion) + "');"
      "CREATE TABLE IF NOT EXISTS sandboxes ("
      "  id TEXT PRIMARY KEY, backend TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,"
      "  message TEXT NOT NULL, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,"
      "  last_transition_ms INTEGER NOT NULL, expires_at_ms INTEGER, access_token TEXT NOT NULL,"
      "  handle TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, spec_json TEXT NOT NULL,"
      "  pooled INTEGER NOT NULL, removal_json TEXT);";
  if (auto why = exec_script(store->db_, schema)) {
    return make_error(Errc::unavailable, "cannot set up state file " + path + ": " + *why);
  }
  // The version row: a file written by a later (or earlier) schema is not read as ours.
  sqlite3_stmt* version = nullptr;
  if (sqlite3_prepare_v2(store->db_, "SELECT value FROM meta WHERE key='schema_version'", -1, &version, nullptr) !=
      SQLITE_OK) {
    return make_error(Errc::unavailable, std::string("state file: ") + sqlite3_errmsg(store->db_));
  }
  std::string found;
  if (sqlite3_step(version) == SQLITE_ROW) found = column_text(version, 0);
  sqlite3_finalize(version);
  if (found == "1") {
    // Version 1 lacked pending removals: one nullable column, no row changes meaning.
    const char* migrate =
        "BEGIN IMMEDIATE;"
        "ALTER TABLE sandboxes ADD COLUMN removal_json TEXT;"
        "UPDATE meta SET value='2' WHERE key='schema_version';"
        "COMMIT;";
    if (auto why = exec_script(store->db_, migrate)) {
      sqlite3_exec(store->db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return make_error(Errc::unavailable, "cannot migrate state file " + path + " from schema version 1: " + *why);
    }
    found = "2";
  }
  if (found != std::to_string(kSchemaVersion)) {
    return make_error(Errc::unavailable, "state file " + path + " has schema version '" + found + "'; this gateway reads " +
                                             std::to_string(kSchemaVersion));
  }
  if (auto r = store->prepare(); !r) return r.error();
  return store;
}

core::Result<void> SandboxStore::prepare() {
  const std::string put = std::string("INSERT OR REPLACE INTO sandboxes (") + kColumns +
                          ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
  const std::string load = std::string("SELECT ") + kColumns + " FROM sandboxes ORDER BY created_at_ms, id";
  const struct {
    sqlite3_stmt** st;
    std::string sql;
  } statements[] = {
      {&put_, put},
      {&erase_, "DELETE FROM sandboxes WHERE id = ?1"},
      {&load_, load},
      {&select_stale_,
       "SELECT id FROM sandboxes WHERE state IN ('Terminated', 'Failed') AND last_transition_ms < ?1 "
       "AND removal_json IS NULL"},
  };
  for (const auto& s : statements) {
    if (sqlite3_prepare_v3(db_, s.sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, s.st, nullptr) != SQLITE_OK) {
      return make_error(Errc::internal, "state file: cannot prepare '" + s.sql + "': " + sqlite3_errmsg(db_));
    }
  }
  return {};
}

SandboxStore::~SandboxStore() {
  for (sqlite3_stmt* st : {put_, erase_, load_, select_stale_}) sqlite3_finalize(st);
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

core::Result<void> SandboxStore::put(const SandboxRow& record) {
  std::lock_guard<std::mutex> lock(mu_);
  const Sandbox& s = record.sandbox;
  StatementReset reset{put_};
  const std::string state(to_string(s.state));
  const std::string spec = spec_to_json(s.spec);
  sqlite3_bind_text(put_, 1, s.id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 2, s.backend.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 3, state.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 4, s.reason.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 5, s.message.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(put_, 6, to_ms(s.created_at));
  sqlite3_bind_int64(put_, 7, to_ms(s.updated_at));
  sqlite3_bind_int64(put_, 8, to_ms(s.last_transition_at));
  if (s.expires_at) {
    sqlite3_bind_int64(put_, 9, to_ms(*s.expires_at));
  } else {
    sqlite3_bind_null(put_, 9);
  }
  sqlite3_bind_text(put_, 10, s.access_token.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 11, s.placement.handle.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 12, s.placement.host.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(put_, 13, s.placement.port);
  sqlite3_bind_text(put_, 14, spec.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(put_, 15, record.is_pooled ? 1 : 0);
  const std::string removal = record.removal ? removal_to_json(*record.removal) : std::string();
  if (record.removal) {
    sqlite3_bind_text(put_, 16, removal.c_str(), -1, SQLITE_TRANSIENT);
  } else {
    sqlite3_bind_null(put_, 16);
  }
  if (sqlite3_step(put_) != SQLITE_DONE) {
    return make_error(Errc::internal, "state file: cannot write sandbox " + s.id + ": " + sqlite3_errmsg(db_));
  }
  return {};
}

core::Result<void> SandboxStore::erase(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  StatementReset reset{erase_};
  sqlite3_bind_text(erase_, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(erase_) != SQLITE_DONE) {
    return make_error(Errc::internal, "state file: cannot delete sandbox " + id + ": " + sqlite3_errmsg(db_));
  }
  return {};
}

core::Result<std::vector<SandboxRow>> SandboxStore::load_all() {
  std::lock_guard<std::mutex> lock(mu_);
  StatementReset reset{load_};
  std::vector<SandboxRow> out;
  int rc = 0;
  while ((rc = sqlite3_step(load_)) == SQLITE_ROW) {
    SandboxRow r;
    Sandbox& s = r.sandbox;
    s.id = column_text(load_, 0);
    s.backend = column_text(load_, 1);
    const std::string state = column_text(load_, 2);
    auto parsed = parse_state(state);
    if (!parsed) return make_error(Errc::internal, "state file: sandbox " + s.id + " has unknown state '" + state + "'");
    s.state = *parsed;
    s.reason = column_text(load_, 3);
    s.message = column_text(load_, 4);
    s.created_at = from_ms(sqlite3_column_int64(load_, 5));
    s.updated_at = from_ms(sqlite3_column_int64(load_, 6));
    s.last_transition_at = from_ms(sqlite3_column_int64(load_, 7));
    if (sqlite3_column_type(load_, 8) != SQLITE_NULL) s.expires_at = from_ms(sqlite3_column_int64(load_, 8));
    s.access_token = column_text(load_, 9);
    s.placement.handle = column_text(load_, 10);
    s.placement.host = column_text(load_, 11);
    s.placement.port = sqlite3_column_int(load_, 12);
    auto spec = spec_from_json(column_text(load_, 13));
    if (!spec) return make_error(Errc::internal, "state file: sandbox " + s.id + ": " + spec.error().message);
    s.spec = std::move(*spec);
    r.is_pooled = sqlite3_column_int(load_, 14) != 0;
    if (sqlite3_column_type(load_, 15) != SQLITE_NULL) {
      auto removal = removal_from_json(column_text(load_, 15));
      if (!removal) return make_error(Errc::internal, "state file: sandbox " + s.id + ": " + removal.error().message);
      r.removal = std::move(*removal);
    }
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return make_error(Errc::internal, std::string("state file: cannot read: ") + sqlite3_errmsg(db_));
  return out;
}

core::Result<std::vector<std::string>> SandboxStore::prune_final_before(TimePoint cutoff) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> ids;
  {
    StatementReset reset{select_stale_};
    sqlite3_bind_int64(select_stale_, 1, to_ms(cutoff));
    int rc = 0;
    while ((rc = sqlite3_step(select_stale_)) == SQLITE_ROW) ids.push_back(column_text(select_stale_, 0));
    if (rc != SQLITE_DONE) return make_error(Errc::internal, std::string("state file: cannot read: ") + sqlite3_errmsg(db_));
  }
  for (const auto& id : ids) {
    StatementReset reset{erase_};
    sqlite3_bind_text(erase_, 1, id.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(erase_) != SQLITE_DONE) {
      return make_error(Errc::internal, "state file: cannot delete sandbox " + id + ": " + sqlite3_errmsg(db_));
    }
  }
  return ids;
}

}  // namespace execd::gateway
