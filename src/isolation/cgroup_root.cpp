#include "isolation/cgroup_root.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <sstream>

#include <spdlog/spdlog.h>

#include "core/fd_io.hpp"

namespace execd::isolation {
namespace {

constexpr const char* kPrefix = "execd-";
// cpuacct reads CPU usage; freezer makes kill_all race-free. memory and pids are the limits.
// cpu (bandwidth) is used only when Options::cpu asks for it.
const std::vector<std::string> kV1Controllers = {"memory", "pids", "cpuacct", "freezer", "cpu"};
const std::vector<std::string> kV2Controllers = {"memory", "pids", "cpu"};

struct Mount {
  std::string point;
  std::string root;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or "".
std::string start_time(pid_t pid) {
  const std::string stat = core::read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && in >> field; ++i) {
    if (i == 22) return field;
  }
  return {};
}

/// Where `path` (from /proc/self/cgroup) is under `m`: paths are relative to the cgroup
/// namespace root, which is the mount's root when the cgroup fs is mounted inside it.
std::string own_dir(const Mount& m, const std::string& path) {
  std::string rel = path;
  if (m.root != "/" && rel.rfind(m.root, 0) == 0) rel = rel.substr(m.root.size());
  if (rel == "/") rel.clear();
  return m.point + rel;
}

bool make_dir(const std::string& path, std::string* why) {
  if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) return true;
  *why = "cannot create " + path + ": " + std::strerror(errno);
  return false;
}

/// Kills and removes `name` under each of `parents` (controller -> dir), children first.
void remove_tree(int version, const std::map<std::string, std::string>& parents, const std::string& name) {
  std::map<std::string, std::string> top;
  std::set<std::string> children;
  for (const auto& [controller, parent] : parents) {
    const std::string d = parent + "/" + name;
    if (::access(d.c_str(), F_OK) != 0) continue;
    top[controller] = d;
    for (const auto& c : child_groups(d)) children.insert(c);
  }
  for (const auto& child : children) {
    std::map<std::string, std::string> dirs;
    for (const auto& [controller, d] : top) {
      if (::access((d + "/" + child).c_str(), F_OK) == 0) dirs[controller] = d + "/" + child;
    }
    Cgroup group(version, dirs);
    if (auto r = group.remove(); !r) spdlog::warn("isolation: {}", r.error().message);
  }
  if (!top.empty()) {
    Cgroup group(version, top);
    if (auto r = group.remove(); !r) spdlog::warn("isolation: {}", r.error().message);
  }
}

/// True when a child group of `parent` accepts a write to `controller`'s main file.
bool probe_controller(int version, const std::string& parent, const std::string& controller) {
  const std::string probe = parent + "/probe-" + std::to_string(::getpid());
  if (::mkdir(probe.c_str(), 0755) != 0 && errno != EEXIST) return false;
  std::string file;
  std::string value;
  if (version == 2) {
    if (controller == "memory") file = "memory.max", value = "max";
    if (controller == "pids") file = "pids.max", value = "max";
    if (controller == "cpu") file = "cpu.weight", value = "100";
    if (controller == "freezer") file = "cgroup.freeze", value = "0";
  } else {
    if (controller == "memory") file = "memory.limit_in_bytes", value = "-1";
    if (controller == "pids") file = "pids.max", value = "max";
    if (controller == "cpuacct") file = "cpuacct.usage", value = "0";
    if (controller == "freezer") file = "freezer.state", value = "THAWED";
    if (controller == "cpu") file = "cpu.cfs_quota_us", value = "-1";
  }
  const bool ok = !file.empty() && write_cgroup_file(probe + "/" + file, value).ok() &&
                  ::access((probe + "/cgroup.procs").c_str(), W_OK) == 0;
  ::rmdir(probe.c_str());
  return ok;
}

}  // namespace

std::string CgroupRoot::parent_name_for(pid_t pid) {
  return std::string(kPrefix) + std::to_string(pid) + "-" + start_time(pid);
}

bool CgroupRoot::is_stale_parent(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0) return false;
  const auto parts = split(name.substr(std::strlen(kPrefix)), '-');
  if (parts.size() != 2) return false;
  pid_t pid = 0;
  try {
    pid = static_cast<pid_t>(std::stol(parts[0]));
  } catch (...) {
    return false;
  }
  return start_time(pid) != parts[1];
}

std::unique_ptr<CgroupRoot> CgroupRoot::open(const Options& options) {
  std::unique_ptr<CgroupRoot> root(new CgroupRoot());
  root->keep_groups_ = options.keep_groups;
  std::map<std::string, Mount> v1_mounts;
  std::optional<Mount> v2_mount;
  std::istringstream mounts(core::read_file(options.mountinfo));
  for (std::string line; std::getline(mounts, line);) {
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    const auto left = split(line.substr(0, dash), ' ');
    const auto right = split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.size() < 3) continue;
    const Mount m{left[4], left[3]};
    if (right[0] == "cgroup2") v2_mount = m;
    if (right[0] != "cgroup") continue;
    for (const auto& opt : split(right[2], ',')) {
      if (opt == "cpu" && !options.cpu) continue;
      if (std::find(kV1Controllers.begin(), kV1Controllers.end(), opt) != kV1Controllers.end()) v1_mounts[opt] = m;
    }
  }
  std::map<std::string, std::string> v1_paths;
  std::string v2_path;
  std::istringstream self(core::read_file(options.self_cgroup));
  for (std::string line; std::getline(self, line);) {
    const auto c1 = line.find(':');
    const auto c2 = line.find(':', c1 + 1);
    if (c1 == std::string::npos || c2 == std::string::npos) continue;
    const std::string controllers = line.substr(c1 + 1, c2 - c1 - 1);
    const std::string path = line.substr(c2 + 1);
    if (controllers.empty()) v2_path = path;
    for (const auto& c : split(controllers, ',')) v1_paths[c] = path;
  }

  const std::string name = options.name.empty() ? parent_name_for(::getpid()) : options.name;
  std::map<std::string, std::string> own;  // controller -> the daemon's own group dir
  if (v1_mounts.count("memory") != 0 || v1_mounts.count("pids") != 0) {
    root->version_ = 1;
    for (const auto& [controller, m] : v1_mounts) {
      auto p = v1_paths.find(controller);
      if (p != v1_paths.end()) own[controller] = own_dir(m, p->second);
    }
  } else if (v2_mount) {
    root->version_ = 2;
    own[""] = own_dir(*v2_mount, v2_path);
  } else {
    root->reason_ = "no cgroup v1 memory/pids hierarchy and no cgroup2 mount in " + options.mountinfo;
    return root;
  }

  // Sweep: parents named after daemons that are gone.
  std::set<std::string> stale;
  for (const auto& [controller, d] : own) {
    for (const auto& n : child_groups(d)) {
      if (n != name && is_stale_parent(n)) stale.insert(n);
    }
  }
  for (const auto& n : stale) {
    spdlog::info("isolation: removing cgroup {} left by a daemon that is gone", n);
    remove_tree(root->version_, own, n);
  }

  std::vector<std::string> why;
  if (root->version_ == 1) {
    for (const auto& [controller, d] : own) {
      std::string w;
      if (!make_dir(d + "/" + name, &w)) {
        why.push_back(controller + ": " + w);
        continue;
      }
      root->parents_[controller] = d + "/" + name;
      if (probe_controller(1, d + "/" + name, controller)) {
        root->writable_.push_back(controller);
      } else {
        why.push_back(controller + ": a child group refused its limit file");
      }
    }
    for (const auto& c : kV1Controllers) {
      if (v1_mounts.count(c) == 0 && (c != "cpu" || options.cpu)) why.push_back(c + ": not mounted");
    }
  } else {
    const std::string d = own[""];
    const std::string parent = d + "/" + name;
    std::string w;
    // Controllers reach a child only through every ancestor's subtree_control; the kernel
    // refuses that on a group that holds processes itself (the daemon's own, unless root).
    const auto available = split(core::read_file(d + "/cgroup.controllers"), ' ');
    for (const auto& c : kV2Controllers) {
      const bool has = std::any_of(available.begin(), available.end(), [&](const std::string& a) {
        return a == c || a == c + "\n";
      });
      if (!has) {
        why.push_back(c + ": not available in " + d);
        continue;
      }
      if (auto r = write_cgroup_file(d + "/cgroup.subtree_control", "+" + c); !r) {
        why.push_back(c + ": cannot delegate from the daemon's own group (" + r.error().message +
                      "); run execd in a cgroup of its own with Delegate=yes");
      }
    }
    if (make_dir(parent, &w)) {
      root->parents_[""] = parent;
      for (const auto& c : kV2Controllers) (void)write_cgroup_file(parent + "/cgroup.subtree_control", "+" + c);
      for (const auto& c : {"memory", "pids", "cpu", "freezer"}) {
        if (probe_controller(2, parent, c)) root->writable_.push_back(c);
      }
    } else {
      why.push_back(w);
    }
  }
  if (root->writable_.empty()) root->version_ = 0;
  for (const auto& w : why) root->reason_ += (root->reason_.empty() ? "" : "; ") + w;
  return root;
}

CgroupRoot::~CgroupRoot() { remove_all(); }

void CgroupRoot::remove_all() {
  if (parents_.empty() || removed_.exchange(true)) return;
  if (keep_groups_) {
    // Only an empty parent goes (rmdir refuses one with child groups): no litter of
    // parents from gateways that ran no sandbox, none taken from one that still has some.
    for (const auto& [controller, d] : parents_) ::rmdir(d.c_str());
    return;
  }
  std::map<std::string, std::string> grandparents;
  std::string name;
  for (const auto& [controller, d] : parents_) {
    const auto slash = d.rfind('/');
    grandparents[controller] = d.substr(0, slash);
    name = d.substr(slash + 1);
  }
  remove_tree(version_ == 0 ? 1 : version_, grandparents, name);
}

bool CgroupRoot::writable(const std::string& controller) const {
  return std::find(writable_.begin(), writable_.end(), controller) != writable_.end();
}

std::vector<std::string> CgroupRoot::writable_controllers() const { return writable_; }

core::Result<std::unique_ptr<Cgroup>> CgroupRoot::create(const std::string& name) {
  if (version_ == 0) return core::make_error(core::Errc::not_supported, "cgroups are not usable here: " + reason_);
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return core::make_error(core::Errc::invalid_argument, "bad cgroup name '" + name + "'");
  }
  std::map<std::string, std::string> dirs;
  std::set<std::string> made;
  for (const auto& [controller, parent] : parents_) {
    if (version_ == 1 && !writable(controller)) continue;
    const std::string d = parent + "/" + name;
    // Co-mounted v1 controllers (cpu,cpuacct) share one directory.
    if (made.count(d) != 0) {
      dirs[controller] = d;
      continue;
    }
    // A kept parent that was empty may have been removed by another object of the same
    // name going away (a gateway restarting): make it again.
    int rc = ::mkdir(d.c_str(), 0755);
    if (rc != 0 && errno == ENOENT && keep_groups_ && ::mkdir(parent.c_str(), 0755) == 0) {
      if (version_ == 2) {
        for (const auto& c : kV2Controllers) (void)write_cgroup_file(parent + "/cgroup.subtree_control", "+" + c);
      }
      rc = ::mkdir(d.c_str(), 0755);
    }
    if (rc != 0) {
      const int err = errno;
      Cgroup partial(version_, dirs);  // removes what was made
      return core::make_error(err == EEXIST ? core::Errc::conflict : core::Errc::unavailable,
                              "cannot create cgroup " + d + ": " + std::strerror(err));
    }
    dirs[controller] = d;
    made.insert(d);
  }
  return std::make_unique<Cgroup>(version_, std::move(dirs));
}

core::Result<std::unique_ptr<Cgroup>> CgroupRoot::open_existing(const std::string& name) {
  if (version_ == 0) return core::make_error(core::Errc::not_supported, "cgroups are not usable here: " + reason_);
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return core::make_error(core::Errc::invalid_argument, "bad cgroup name '" + name + "'");
  }
  std::map<std::string, std::string> dirs;
  for (const auto& [controller, parent] : parents_) {
    const std::string d = parent + "/" + name;
    if (::access(d.c_str(), F_OK) == 0) dirs[controller] = d;
  }
  if (dirs.empty()) return core::make_error(core::Errc::not_found, "no cgroup named " + name);
  return std::make_unique<Cgroup>(version_, std::move(dirs));
}

}  // namespace execd::isolation
