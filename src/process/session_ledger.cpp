#include "process/session_ledger.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "core/fd_io.hpp"
#include "process/proc_table.hpp"

namespace execd::process {

core::Result<SessionLedger> SessionLedger::create(const std::string& path) {
  core::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) {
    return core::make_error(core::Errc::unavailable, "cannot create the session ledger " + path + ": " + std::strerror(errno));
  }
  return SessionLedger(path, std::move(fd));
}

SessionLedger::SessionLedger(SessionLedger&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::move(other.fd_)), by_pid_(std::move(other.by_pid_)),
      free_(std::move(other.free_)), slots_(other.slots_) {}

void SessionLedger::write_slot(size_t index, const Record& r) {
  const std::string_view bytes(reinterpret_cast<const char*>(&r), sizeof r);
  if (!core::pwrite_all(fd_.get(), bytes, index * sizeof r)) {
    spdlog::warn("session ledger: write failed ({}); a crash may leave this session's processes behind",
                 std::strerror(errno));
  }
}

void SessionLedger::add(pid_t pid) {
  // Read before the lock: the child has exec'd, its start time is fixed.
  const auto id = read_identity(pid);
  Record r{static_cast<int32_t>(pid), 0, id ? id->start_ticks : 0};
  std::lock_guard<std::mutex> lock(mu_);
  if (!id) return;  // already gone and reaped: nothing to end
  size_t index = slots_;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    ++slots_;
  }
  by_pid_[pid] = Slot{index, false};
  write_slot(index, r);
}

void SessionLedger::leader_gone(pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_pid_.find(pid);
  if (it != by_pid_.end()) it->second.leader_gone = true;
}

void SessionLedger::prune() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = by_pid_.begin(); it != by_pid_.end();) {
    // The group id stays taken while any member lives, so an empty group is final. (A
    // member that moved to another group of the session is not seen: rare outside
    // interactive job control.)
    if (it->second.leader_gone && ::kill(-it->first, 0) != 0 && errno == ESRCH) {
      write_slot(it->second.index, Record{0, 0, 0});
      free_.push_back(it->second.index);
      it = by_pid_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t SessionLedger::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_pid_.size();
}

size_t SessionLedger::end_recorded(const std::string& path, const std::string& proc_root) {
  const std::string bytes = core::read_file(path);
  std::unordered_map<pid_t, uint64_t> sessions;  // sid -> leader start ticks
  for (size_t off = 0; off + sizeof(Record) <= bytes.size(); off += sizeof(Record)) {
    Record r{};
    std::memcpy(&r, bytes.data() + off, sizeof r);
    if (r.pid > 0) sessions[r.pid] = r.start_ticks;
  }
  if (sessions.empty()) return 0;
  size_t signalled = 0;
  // A few passes: a member may fork between the scan and the kill.
  for (int pass = 0; pass < 5; ++pass) {
    const auto all = list_identities(proc_root);
    std::unordered_map<pid_t, uint64_t> start_of;
    for (const auto& p : all) start_of[p.pid] = p.start_ticks;
    size_t this_pass = 0;
    for (const auto& p : all) {
      auto s = sessions.find(p.sid);
      if (s == sessions.end()) continue;
      // A live leader with another start time is a new process that reused the pid:
      // the session is not the one recorded.
      auto leader = start_of.find(p.sid);
      if (leader != start_of.end() && leader->second != s->second) continue;
      if (p.start_ticks < s->second || p.state == 'Z' || p.pid == ::getpid()) continue;
      if (::kill(p.pid, SIGKILL) == 0) ++this_pass;
    }
    signalled += this_pass;
    if (this_pass == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (signalled > 0) spdlog::info("runtime: ended {} processes left by a daemon that is gone", signalled);
  return signalled;
}

}  // namespace execd::process
