#include "support/proc_probe.hpp"

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "support/temp_dir.hpp"

namespace execd::test {

namespace fs = std::filesystem;

std::vector<ProcInfo> processes() {
  std::vector<ProcInfo> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (!std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    const std::string stat = read_file(e.path() / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos || close + 4 >= stat.size()) continue;  // gone meanwhile
    ProcInfo p;
    p.pid = static_cast<pid_t>(std::atol(name.c_str()));
    p.state = stat[close + 2];
    p.ppid = static_cast<pid_t>(std::atol(stat.c_str() + close + 4));  // ") S ppid ..."
    p.stat_head = stat.substr(0, close + 3);
    p.cmdline = read_file(e.path() / "cmdline");
    while (!p.cmdline.empty() && p.cmdline.back() == '\0') p.cmdline.pop_back();
    for (auto& c : p.cmdline) {
      if (c == '\0') c = ' ';
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<pid_t> live_with(const std::string& needle) {
  std::vector<pid_t> out;
  for (const auto& p : processes()) {
    if (p.state != 'Z' && p.cmdline.find(needle) != std::string::npos) out.push_back(p.pid);
  }
  return out;
}

size_t fd_count(pid_t pid) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
  return n;
}

long status_kib(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
  }
  return -1;
}

std::vector<std::string> daemon_cgroups(pid_t daemon, const std::string& prefix) {
  std::vector<std::string> out;
  const std::string parent = "execd-" + std::to_string(daemon) + "-";
  std::ifstream in("/proc/" + std::to_string(daemon) + "/cgroup");
  for (std::string line; std::getline(in, line);) {
    const auto c1 = line.find(':');
    const auto c2 = line.find(':', c1 + 1);
    if (c1 == std::string::npos || c2 == std::string::npos) continue;
    const std::string controller = line.substr(c1 + 1, c2 - c1 - 1);
    if (controller != "pids" && controller != "memory") continue;
    const std::string path = line.substr(c2 + 1);
    const std::string dir = "/sys/fs/cgroup/" + controller + (path == "/" ? std::string() : path);
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (!e.is_directory() || e.path().filename().string().rfind(parent, 0) != 0) continue;
      for (const auto& g : fs::directory_iterator(e.path(), ec)) {
        const std::string name = g.path().filename().string();
        const bool spare = name.rfind("spare-", 0) == 0 && prefix.rfind("spare-", 0) != 0;
        if (g.is_directory() && name.rfind(prefix, 0) == 0 && !spare) out.push_back(controller + ":" + name);
      }
    }
  }
  return out;
}

std::string kill_below_keepers_command(const std::string& prefix, bool keepers_too) {
  // desc() recurses in a subshell: sh's variables are global, and the loop's `c` must
  // survive the call (without it only the deepest descendant was ever printed). The
  // pattern's first character is bracketed so that the shell running it does not match.
  return "desc() { for c in $(pgrep -P \"$1\"); do (desc \"$c\"); echo \"$c\"; done; }; "
         "for k in $(pgrep -f '[e]xecd-sandbox-keeper " + prefix + "'); do kill -9 $(desc $k)" +
         (keepers_too ? " $k" : "") + " 2>/dev/null; done; true";
}

}  // namespace execd::test
