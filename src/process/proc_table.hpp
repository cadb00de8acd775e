#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace execd::process {

/// One process as /proc shows it.
struct ProcessInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
  uid_t uid = 0;
  std::string user;      ///< name from the passwd db, or the uid as text
  char state = '?';      ///< R, S, D, Z, T, ...
  std::string command;   ///< the command line, arguments joined by spaces; [comm] for kernel threads
  double cpu_percent = 0;  ///< (user+sys) over the process's lifetime, as ps(1) reports it
  uint64_t rss_bytes = 0;
  int64_t start_time_ms = 0;  ///< Unix ms
};

/// Every process visible in `proc_root` (normally /proc; tests pass a fake tree).
/// Processes that vanish while being read are skipped.
std::vector<ProcessInfo> list_processes(const std::string& proc_root = "/proc");

/// One process; not_found if it does not exist.
core::Result<ProcessInfo> read_process(pid_t pid, const std::string& proc_root = "/proc");

/// Pids whose process group is `pgid` (from /proc/<pid>/stat).
std::vector<pid_t> group_members(pid_t pgid, const std::string& proc_root = "/proc");

/// user+sys CPU of `pid` and of the children it has waited for, in ms (a shell's
/// running total: the difference across one command is that command's cost).
core::Result<uint64_t> cpu_time_with_children_ms(pid_t pid, const std::string& proc_root = "/proc");

/// Bytes `pid` has caused to be read from and written to storage so far
/// (/proc/<pid>/io read_bytes, write_bytes: what rusage's ru_inblock/ru_oublock count, in
/// bytes). not_found when it does not exist or cannot be read.
struct IoBytes {
  uint64_t read = 0;
  uint64_t written = 0;
};
core::Result<IoBytes> io_bytes(pid_t pid, const std::string& proc_root = "/proc");

/// Resets the kernel's record of `pid`'s peak RSS (/proc/<pid>/clear_refs, "5"), so a
/// later peak_rss_kib() measures from now. False if not permitted.
bool reset_peak_rss(pid_t pid, const std::string& proc_root = "/proc");
/// VmHWM of `pid`: its peak resident set since start or the last reset, in KiB.
core::Result<uint64_t> peak_rss_kib(pid_t pid, const std::string& proc_root = "/proc");

/// Who a process is, beyond its pid: its session, its group and when it started (clock
/// ticks since boot), which together tell a live process from a later one that reused
/// its pid.
struct ProcessIdentity {
  pid_t pid = 0;
  pid_t pgid = 0;
  pid_t sid = 0;
  uint64_t start_ticks = 0;
  char state = '?';  ///< Z: a zombie, already dead
};

/// `pid`'s identity from one read of /proc/<pid>/stat; nullopt if it does not exist.
/// Cheap enough for every spawn (one open, one read).
std::optional<ProcessIdentity> read_identity(pid_t pid, const std::string& proc_root = "/proc");
/// The identity of every process visible in `proc_root`.
std::vector<ProcessIdentity> list_identities(const std::string& proc_root = "/proc");

/// A signal by name ("TERM", "SIGKILL", "9"); invalid_argument otherwise.
core::Result<int> parse_signal(const std::string& name);

}  // namespace execd::process
