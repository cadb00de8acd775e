#include "process/proc_table.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "core/fd_io.hpp"
#include "core/keyed_text.hpp"

namespace execd::process {
namespace {

std::string slurp(const std::string& path) { return core::read_file(path); }

// The parts of /proc/<pid>/stat we use. The command name is in parentheses and may hold
// spaces and ')', so fields are counted from the last ')'.
struct Stat {
  char state = '?';
  pid_t ppid = 0;
  pid_t pgid = 0;
  uint64_t utime = 0, stime = 0, cutime = 0, cstime = 0, starttime = 0;  // clock ticks
  uint64_t rss_pages = 0;
  std::string comm;
};

bool parse_stat(const std::string& text, Stat& out) {
  const auto open = text.find('(');
  const auto close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  out.comm = text.substr(open + 1, close - open - 1);
  std::istringstream rest(text.substr(close + 1));
  std::string f[22];
  // Field 3 (state) is rest[0]; field N is rest[N-3].
  for (auto& s : f) {
    if (!(rest >> s)) return false;
  }
  out.state = f[0].empty() ? '?' : f[0][0];
  out.ppid = static_cast<pid_t>(std::strtol(f[1].c_str(), nullptr, 10));
  out.pgid = static_cast<pid_t>(std::strtol(f[2].c_str(), nullptr, 10));
  out.utime = std::strtoull(f[11].c_str(), nullptr, 10);
  out.stime = std::strtoull(f[12].c_str(), nullptr, 10);
  out.cutime = std::strtoull(f[13].c_str(), nullptr, 10);
  out.cstime = std::strtoull(f[14].c_str(), nullptr, 10);
  out.starttime = std::strtoull(f[19].c_str(), nullptr, 10);
  out.rss_pages = std::strtoull(f[21].c_str(), nullptr, 10);
  return true;
}

double uptime_seconds(const std::string& proc_root) {
  return std::strtod(slurp(proc_root + "/uptime").c_str(), nullptr);
}

int64_t boot_time_ms(const std::string& proc_root) {
  return static_cast<int64_t>(core::keyed_value(slurp(proc_root + "/stat"), "btime").value_or(0)) * 1000;
}

std::string user_name(uid_t uid, std::unordered_map<uid_t, std::string>& cache) {
  auto it = cache.find(uid);
  if (it != cache.end()) return it->second;
  std::string name = std::to_string(uid);
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) name = found->pw_name;
  cache.emplace(uid, name);
  return name;
}

struct Context {
  std::string proc_root;
  double uptime = 0;
  int64_t boot_ms = 0;
  long ticks = 100;
  long page = 4096;
  std::unordered_map<uid_t, std::string> users;
};

bool read_one(pid_t pid, Context& ctx, ProcessInfo& info) {
  const std::string dir = ctx.proc_root + "/" + std::to_string(pid);
  Stat st;
  if (!parse_stat(slurp(dir + "/stat"), st)) return false;
  struct stat sb {};
  if (::stat(dir.c_str(), &sb) != 0) return false;
  info.pid = pid;
  info.ppid = st.ppid;
  info.pgid = st.pgid;
  info.uid = sb.st_uid;
  info.user = user_name(sb.st_uid, ctx.users);
  info.state = st.state;
  std::string cmdline = slurp(dir + "/cmdline");
  while (!cmdline.empty() && cmdline.back() == '\0') cmdline.pop_back();
  for (auto& c : cmdline) {
    if (c == '\0') c = ' ';
  }
  info.command = cmdline.empty() ? "[" + st.comm + "]" : cmdline;
  const double started_s = static_cast<double>(st.starttime) / static_cast<double>(ctx.ticks);
  const double alive_s = ctx.uptime - started_s;
  const double cpu_s = static_cast<double>(st.utime + st.stime) / static_cast<double>(ctx.ticks);
  info.cpu_percent = alive_s > 0 ? 100.0 * cpu_s / alive_s : 0.0;
  info.rss_bytes = st.rss_pages * static_cast<uint64_t>(ctx.page);
  info.start_time_ms = ctx.boot_ms + static_cast<int64_t>(started_s * 1000.0);
  return true;
}

Context make_context(const std::string& proc_root) {
  Context ctx;
  ctx.proc_root = proc_root;
  ctx.uptime = uptime_seconds(proc_root);
  ctx.boot_ms = boot_time_ms(proc_root);
  ctx.ticks = sysconf(_SC_CLK_TCK);
  ctx.page = sysconf(_SC_PAGESIZE);
  return ctx;
}

template <typename Fn>
void for_each_pid(const std::string& proc_root, Fn fn) {
  DIR* d = opendir(proc_root.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    pid_t pid = 0;
    const char* end = e->d_name + std::strlen(e->d_name);
    auto [p, ec] = std::from_chars(e->d_name, end, pid);
    if (ec == std::errc() && p == end && pid > 0) fn(pid);
  }
  closedir(d);
}

// Fields 5 (pgrp), 6 (session) and 22 (starttime) of a stat line, counted from the last
// ')' as parse_stat does, without allocating: this runs on every spawn.
bool parse_identity(std::string_view text, ProcessIdentity& out) {
  const auto close = text.rfind(')');
  if (close == std::string_view::npos) return false;
  const char* p = text.data() + close + 1;
  const char* end = text.data() + text.size();
  for (int field = 3; field <= 22; ++field) {
    while (p < end && *p == ' ') ++p;
    const char* start = p;
    while (p < end && *p != ' ' && *p != '\n') ++p;
    if (start == p) return false;
    if (field == 3) out.state = *start;
    if (field == 5) std::from_chars(start, p, out.pgid);
    if (field == 6) std::from_chars(start, p, out.sid);
    if (field == 22) std::from_chars(start, p, out.start_ticks);
  }
  return true;
}

}  // namespace

std::optional<ProcessIdentity> read_identity(pid_t pid, const std::string& proc_root) {
  char path[64];
  if (proc_root == "/proc") {
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  } else if (std::snprintf(path, sizeof path, "%s/%d/stat", proc_root.c_str(), static_cast<int>(pid)) >= 64) {
    return std::nullopt;
  }
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  ProcessIdentity id;
  id.pid = pid;
  if (n <= 0 || !parse_identity(std::string_view(buf, static_cast<size_t>(n)), id)) return std::nullopt;
  return id;
}

std::vector<ProcessIdentity> list_identities(const std::string& proc_root) {
  std::vector<ProcessIdentity> out;
  for_each_pid(proc_root, [&](pid_t pid) {
    if (auto id = read_identity(pid, proc_root)) out.push_back(*id);
  });
  return out;
}

std::vector<ProcessInfo> list_processes(const std::string& proc_root) {
  Context ctx = make_context(proc_root);
  std::vector<ProcessInfo> out;
  for_each_pid(proc_root, [&](pid_t pid) {
    ProcessInfo info;
    if (read_one(pid, ctx, info)) out.push_back(std::move(info));
  });
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.pid < b.pid; });
  return out;
}

core::Result<ProcessInfo> read_process(pid_t pid, const std::string& proc_root) {
  Context ctx = make_context(proc_root);
  ProcessInfo info;
  if (pid <= 0 || !read_one(pid, ctx, info)) {
    return core::make_error(core::Errc::not_found, "no such process: " + std::to_string(pid));
  }
  return info;
}

std::vector<pid_t> group_members(pid_t pgid, const std::string& proc_root) {
  std::vector<pid_t> out;
  for_each_pid(proc_root, [&](pid_t pid) {
    Stat st;
    if (parse_stat(slurp(proc_root + "/" + std::to_string(pid) + "/stat"), st) && st.pgid == pgid) out.push_back(pid);
  });
  return out;
}

core::Result<IoBytes> io_bytes(pid_t pid, const std::string& proc_root) {
  const std::string text = slurp(proc_root + "/" + std::to_string(pid) + "/io");
  const auto read = core::keyed_value(text, "read_bytes");
  const auto written = core::keyed_value(text, "write_bytes");
  if (!read || !written) return core::make_error(core::Errc::not_found, "no I/O counters for process " + std::to_string(pid));
  return IoBytes{*read, *written};
}

core::Result<uint64_t> cpu_time_with_children_ms(pid_t pid, const std::string& proc_root) {
  Stat st;
  if (!parse_stat(slurp(proc_root + "/" + std::to_string(pid) + "/stat"), st)) {
    return core::make_error(core::Errc::not_found, "no such process: " + std::to_string(pid));
  }
  const uint64_t ticks = st.utime + st.stime + st.cutime + st.cstime;
  return ticks * 1000 / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
}

bool reset_peak_rss(pid_t pid, const std::string& proc_root) {
  std::ofstream out(proc_root + "/" + std::to_string(pid) + "/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

core::Result<uint64_t> peak_rss_kib(pid_t pid, const std::string& proc_root) {
  if (auto kib = core::keyed_value(slurp(proc_root + "/" + std::to_string(pid) + "/status"), "VmHWM")) return *kib;
  return core::make_error(core::Errc::not_found, "no VmHWM for process " + std::to_string(pid));
}

core::Result<int> parse_signal(const std::string& name_in) {
  std::string name = name_in;
  for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  int num = 0;
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), num);
  if (!name.empty() && ec == std::errc() && p == name.data() + name.size()) {
    if (num >= 0 && num < NSIG) return num;
  } else {
    for (int s = 1; s < NSIG; ++s) {
      const char* abbrev = sigabbrev_np(s);
      if (abbrev != nullptr && name == abbrev) return s;
    }
  }
  return core::make_error(core::Errc::invalid_argument, "unknown signal '" + name_in + "' (use a name like TERM or a number)");
}

}  // namespace execd::process
