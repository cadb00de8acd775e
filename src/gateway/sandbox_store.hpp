#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "gateway/sandbox.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace execd::gateway {

/// A remove the backend refused (the sandbox shows `Failed`, `remove_failed`): what is
/// left of it is removed again later, with backoff, until a remove succeeds.
struct PendingRemoval {
  uint32_t attempts = 0;  ///< failed attempts so far
  TimePoint first_failed_at{};
  TimePoint next_attempt_at{};  ///< when the reaper tries again
  bool has_given_up = false;    ///< past --remove-give-up: only a DELETE tries again
  std::string last_error;
  /// What a successful remove makes the sandbox: the end the failed remove was for.
  SandboxState end_state = SandboxState::terminated;
  std::string end_reason;
  std::string end_message;
};

/// One row of the table: the sandbox and whether it is a warm-pool member (created,
/// running, not yet handed to anyone: never listed, never expired).
struct SandboxRow {
  Sandbox sandbox;
  bool is_pooled = false;
  std::optional<PendingRemoval> removal;  ///< set while its remains wait for a retried remove
};

/// The sandbox table in one SQLite file (WAL journal), so a restarted gateway knows every
/// sandbox it placed. Holds an exclusive lock on `<path>.lock` for its lifetime: a second
/// gateway on the same file is refused at open rather than racing this one. Every call
/// is serialized on one mutex (the one writer) and runs prepared statements; callers are
/// the lifecycle service's threads. The schema carries its version in a `meta` row; a
/// version-1 file is migrated (one added column), any other version is refused, never
/// guessed at.
class SandboxStore {
 public:
  static constexpr int kSchemaVersion = 2;

  /// Opens or creates the file at `path` (":memory:" for a private in-memory table).
  static core::Result<std::unique_ptr<SandboxStore>> open(const std::string& path);
  ~SandboxStore();
  SandboxStore(const SandboxStore&) = delete;
  SandboxStore& operator=(const SandboxStore&) = delete;

  /// Inserts or replaces the row with this sandbox's id (every field).
  core::Result<void> put(const SandboxRow& record);
  /// Removes the row; a missing row is not an error.
  core::Result<void> erase(const std::string& id);
  /// Every row, oldest first.
  core::Result<std::vector<SandboxRow>> load_all();
  /// Deletes final (Terminated/Failed) rows whose last transition is before `cutoff`,
  /// except those with a pending removal (their remains still exist); returns their ids.
  core::Result<std::vector<std::string>> prune_final_before(TimePoint cutoff);

 private:
  SandboxStore() = default;
  core::Result<void> prepare();

  std::mutex mu_;
  sqlite3* db_ = nullptr;
  core::UniqueFd lock_fd_;
  sqlite3_stmt* put_ = nullptr;
  sqlite3_stmt* erase_ = nullptr;
  sqlite3_stmt* load_ = nullptr;
  sqlite3_stmt* select_stale_ = nullptr;
};

}  // namespace execd::gateway
