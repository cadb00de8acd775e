#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"

namespace execd::process {

/// The sessions this daemon started (every spawned child leads one), kept on disk so a
/// daemon that replaces one that died abruptly can end what it left behind: the direct
/// children die with the daemon (PDEATHSIG), but their descendants (`sleep 1000 &`, a
/// kernel's subprocesses) do not.
///
/// Each session is one fixed-size record (leader pid + its start time in clock ticks,
/// so a reused pid is never mistaken for it) written in place with one pwrite; a freed
/// slot is reused, so the file is as large as the most sessions alive at once. A session
/// is forgotten once its leader was reaped and its process group is empty.
/// Thread-safe.
class SessionLedger {
 public:
  /// Creates `path` (0600), empty.
  static core::Result<SessionLedger> create(const std::string& path);

  SessionLedger(SessionLedger&& other) noexcept;
  SessionLedger& operator=(SessionLedger&&) = delete;
  SessionLedger(const SessionLedger&) = delete;

  /// Records the session led by `pid` (a child that has just been spawned).
  void add(pid_t pid);
  /// The leader was reaped: the session is forgotten once its group is empty too.
  void leader_gone(pid_t pid);
  /// Forgets every session whose leader was reaped and whose group is now empty; cheap
  /// (one kill(-pgid, 0) per such session). Called periodically.
  void prune();
  /// Sessions on record now (for tests).
  [[nodiscard]] size_t size() const;

  /// Ends (SIGKILL) every process that belongs to a session recorded in the ledger at
  /// `path`, left by a daemon that is gone. A session matches when its leader is gone or
  /// is still the same process (same start time); processes that started before the
  /// leader cannot be in its session and are spared. Returns how many were signalled.
  static size_t end_recorded(const std::string& path, const std::string& proc_root = "/proc");

 private:
  struct Record {
    int32_t pid;
    uint32_t reserved;
    uint64_t start_ticks;
  };
  struct Slot {
    size_t index;
    bool leader_gone;
  };

  SessionLedger(std::string path, core::UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  void write_slot(size_t index, const Record& r);

  std::string path_;
  core::UniqueFd fd_;
  mutable std::mutex mu_;
  std::unordered_map<pid_t, Slot> by_pid_;
  std::vector<size_t> free_;
  size_t slots_ = 0;
};

}  // namespace execd::process
