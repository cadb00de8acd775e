#include "isolation/bwrap_command.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <mutex>

#include "core/unique_fd.hpp"

extern char** environ;

namespace execd::isolation {
namespace {

bool help_mentions(const std::string& bwrap, const std::string& word) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  core::UniqueFd rd(fds[0]);
  core::UniqueFd wr(fds[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
  const char* args[] = {bwrap.c_str(), "--help", nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, bwrap.c_str(), &fa, nullptr, const_cast<char**>(args), environ);
  posix_spawn_file_actions_destroy(&fa);
  wr.reset();
  if (rc != 0) return false;
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(rd.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR);) {
    if (n > 0) text.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return text.find(word) != std::string::npos;
}

SystemLayout probe_layout(const std::string& bwrap) {
  SystemLayout l;
  for (const char* p : {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"}) {
    struct stat st {};
    if (::lstat(p, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      const ssize_t n = ::readlink(p, target, sizeof target - 1);
      if (n > 0) l.symlinks.emplace_back(std::string(target, static_cast<size_t>(n)), p);
    } else if (S_ISDIR(st.st_mode)) {
      l.ro_dirs.emplace_back(p);
    }
  }
  for (const char* f : {"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers"}) {
    struct stat st {};
    if (::lstat(f, &st) == 0 && S_ISREG(st.st_mode)) l.masked_files.emplace_back(f);
  }
  for (const char* d : {"/etc/ssl/private", "/etc/sudoers.d"}) {
    struct stat st {};
    if (::lstat(d, &st) == 0 && S_ISDIR(st.st_mode)) l.masked_dirs.emplace_back(d);
  }
  l.tmpfs_size_supported = help_mentions(bwrap, "--size");
  return l;
}

}  // namespace

core::Result<SystemLayout> SystemLayout::of_rootfs(const std::string& dir, const std::string& bwrap) {
  SystemLayout l;
  l.root = dir;
  while (l.root.size() > 1 && l.root.back() == '/') l.root.pop_back();
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) return core::make_error(core::Errc::invalid_argument, "root filesystem " + dir + ": " + ec.message());
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    // bubblewrap makes these itself (--proc, --dev, --tmpfs /tmp); /sys is not shown.
    if (name == "proc" || name == "dev" || name == "tmp" || name == "sys") continue;
    const std::string inside = "/" + name;
    std::error_code ec2;
    if (entry.is_symlink(ec2)) {
      char target[PATH_MAX];
      const ssize_t n = ::readlink(entry.path().c_str(), target, sizeof target - 1);
      if (n > 0) l.symlinks.emplace_back(std::string(target, static_cast<size_t>(n)), inside);
    } else if (entry.is_directory(ec2) || entry.is_regular_file(ec2)) {
      l.ro_dirs.push_back(inside);
    }
  }
  std::sort(l.ro_dirs.begin(), l.ro_dirs.end());
  l.tmpfs_size_supported = host(bwrap).tmpfs_size_supported;
  return l;
}

const SystemLayout& SystemLayout::host(const std::string& bwrap) {
  static std::once_flag once;
  static SystemLayout layout;
  std::call_once(once, [&] { layout = probe_layout(bwrap); });
  return layout;
}

core::Result<std::vector<std::string>> BwrapCommand::build(const Options& o, const std::vector<std::string>& argv,
                                                           const SystemLayout& layout) {
  if (argv.empty()) return core::make_error(core::Errc::invalid_argument, "nothing to run");
  if (o.workspace.empty() || o.workspace.front() != '/') {
    return core::make_error(core::Errc::invalid_argument, "the sandbox workspace must be an absolute path");
  }
  if (o.workspace_tmpfs_bytes && !layout.tmpfs_size_supported) {
    return core::make_error(core::Errc::not_supported,
                            "this bubblewrap has no --size, so disk_limit_mb cannot cap the workspace");
  }
  std::vector<std::string> a = {o.bwrap,
                                "--unshare-user",
                                "--unshare-pid",
                                "--unshare-ipc",
                                "--unshare-uts",
                                "--unshare-cgroup-try",
                                "--hostname",
                                o.hostname,
                                "--cap-drop",
                                "ALL"};
  if (o.new_session) a.emplace_back("--new-session");
  if (o.die_with_parent) a.emplace_back("--die-with-parent");
  if (!o.network) a.emplace_back("--unshare-net");
  for (const auto& d : layout.ro_dirs) a.insert(a.end(), {"--ro-bind", layout.root + d, d});
  for (const auto& [target, path] : layout.symlinks) a.insert(a.end(), {"--symlink", target, path});
  for (const auto& f : layout.masked_files) a.insert(a.end(), {"--ro-bind", "/dev/null", f});
  for (const auto& d : layout.masked_dirs) a.insert(a.end(), {"--tmpfs", d});
  a.insert(a.end(), {"--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"});
  for (const auto& p : o.ro_binds) a.insert(a.end(), {"--ro-bind", p, p});
  const std::string& workspace_inside = o.workspace_target.empty() ? o.workspace : o.workspace_target;
  if (o.workspace_tmpfs_bytes) {
    a.insert(a.end(), {"--size", std::to_string(*o.workspace_tmpfs_bytes), "--tmpfs", workspace_inside});
  } else {
    a.insert(a.end(), {"--bind", o.workspace, workspace_inside});
  }
  for (const auto& p : o.rw_binds) a.insert(a.end(), {"--bind", p, p});
  for (const auto& b : o.binds) a.insert(a.end(), {b.writable ? "--bind" : "--ro-bind", b.source, b.target});
  a.emplace_back("--clearenv");
  for (const auto& kv : o.env) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return core::make_error(core::Errc::invalid_argument, "environment entry without KEY=: '" + kv + "'");
    }
    a.insert(a.end(), {"--setenv", kv.substr(0, eq), kv.substr(eq + 1)});
  }
  a.insert(a.end(), {"--chdir", o.cwd.empty() ? workspace_inside : o.cwd, "--"});
  a.insert(a.end(), argv.begin(), argv.end());
  return a;
}

}  // namespace execd::isolation
