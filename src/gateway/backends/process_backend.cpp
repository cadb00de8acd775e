#include "gateway/backends/process_backend.hpp"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/fd_io.hpp"
#include "core/unique_fd.hpp"
#include "gateway/backends/sandbox_record.hpp"
#include "gateway/backends/workspace_quota.hpp"
#include "isolation/bwrap_command.hpp"
#include "isolation/cgroup_root.hpp"
#include "isolation/child_steps.hpp"
#include "process/child_reaper.hpp"
#include "process/spawn.hpp"

namespace execd::gateway {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// Where the gateway's pieces appear inside every sandbox: top-level on bubblewrap's own
// tmpfs root, so they can be made whatever the image has (its directories are read-only).
constexpr const char* kInsideExecd = "/.execd/bin/execd";
constexpr const char* kInsideRun = "/.execd/run";
constexpr const char* kInsideLib = "/.execd/lib";
constexpr const char* kInsideWorkspace = "/workspace";

// The keeper: run bwrap in the background (a fork, so the parent-death signal that
// process::spawn arms is not inherited), record its pid, exit. The background subshell
// waits for bwrap and writes how it ended; it lives in the sandbox's cgroup, so remove's
// kill_all ends it with everything else. Arguments: status file, pid file, bwrap's
// options file (opened as fd 3 for --args), then bwrap's argv.
constexpr const char* kKeeperScript =
    "s=$1 p=$2 a=$3; shift 3\n"
    "( \"$@\" 3<\"$a\"; echo $? > \"$s\" ) &\n"
    "echo $! > \"$p\"\n";

bool is_safe_id(const std::string& id) {
  if (id.empty() || id.size() > 128 || id.front() == '.' || id.front() == '-') return false;
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string fnv1a_hex(const std::string& s) {
  uint32_t h = 2166136261u;
  for (const unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", h);
  return buf;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

/// The ELF interpreter (PT_INTERP) of a 64-bit executable; "" for a static one or on error.
std::string elf_interpreter(const std::string& path) {
  core::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return {};
  Elf64_Ehdr eh{};
  if (::pread(fd.get(), &eh, sizeof eh, 0) != static_cast<ssize_t>(sizeof eh) ||
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64) {
    return {};
  }
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    const off_t at = static_cast<off_t>(eh.e_phoff + static_cast<uint64_t>(i) * eh.e_phentsize);
    if (::pread(fd.get(), &ph, sizeof ph, at) != static_cast<ssize_t>(sizeof ph)) return {};
    if (ph.p_type != PT_INTERP || ph.p_filesz == 0 || ph.p_filesz > 4096) continue;
    std::string interp(ph.p_filesz, '\0');
    if (::pread(fd.get(), interp.data(), interp.size(), static_cast<off_t>(ph.p_offset)) !=
        static_cast<ssize_t>(interp.size())) {
      return {};
    }
    return interp.c_str();  // drops the trailing NUL
  }
  return {};
}

/// The last `max` bytes of a file, from a line start when possible: a sandbox log's tail.
std::string file_tail(const std::string& path, size_t max = 2048) {
  std::string text = core::read_file(path);
  if (text.size() > max) {
    text = text.substr(text.size() - max);
    if (const auto nl = text.find('\n'); nl != std::string::npos && nl + 1 < text.size()) text = text.substr(nl + 1);
  }
  return trim(text);
}

std::optional<int> read_port(const std::string& path) {
  const std::string text = trim(core::read_file(path));
  int port = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || port <= 0 || port > 65535) {
    return std::nullopt;
  }
  return port;
}

/// MemAvailable from /proc/meminfo in bytes; nullopt when unreadable.
std::optional<uint64_t> memory_available() {
  std::istringstream in(core::read_file("/proc/meminfo"));
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

std::string mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

/// Collects `pid` if it is our exited child (a subreaper gateway inherits the keeper and
/// whatever bwrap leaves); a no-op for anything else.
void reap_if_child(pid_t pid) {
  if (pid > 0) (void)::waitpid(pid, nullptr, WNOHANG);
}

int join_cgroup(const void* arg, const char** failed_step) noexcept {
  return static_cast<const isolation::ChildSteps*>(arg)->apply(failed_step);
}

/// Waits (bounded) for the launcher, which exits as soon as it has started the keeper.
core::Result<void> wait_launcher(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
      return core::make_error(core::Errc::unavailable, "the sandbox launcher (/bin/sh) failed with status " +
                                                           std::to_string(WIFEXITED(status) ? WEXITSTATUS(status)
                                                                                            : 128 + WTERMSIG(status)));
    }
    // ECHILD: an orphan reaper collected it first; the pid file says whether it worked.
    if (r < 0 && errno != EINTR) return {};
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      (void)::waitpid(pid, nullptr, 0);
      return core::make_error(core::Errc::unavailable, "the sandbox launcher did not finish within " +
                                                           std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

/// How a sandbox that is no longer running ended, from the keeper's status file and the
/// cgroup's OOM counter.
std::string exit_description(const std::string& dir, const SandboxRecord& record, const isolation::Cgroup* group) {
  std::string out;
  const std::string status = trim(core::read_file(dir + "/exit_status"));
  if (status.empty()) {
    out = "the sandbox's processes ended (no exit status recorded)";
  } else {
    out = "exit status " + status;
    int code = 0;
    if (std::from_chars(status.data(), status.data() + status.size(), code).ec == std::errc() && code > 128) {
      out += " (signal " + std::to_string(code - 128) + ")";
    }
  }
  if (group != nullptr) {
    if (const uint64_t kills = group->usage().oom_kills; kills > 0) {
      out = "OOM killed (" + std::to_string(kills) + " kill(s) at the memory limit" +
            (record.memory_bytes > 0 ? " of " + mib(record.memory_bytes) : std::string()) + "); " + out;
    }
  }
  return out;
}

}  // namespace

core::Result<std::unique_ptr<ProcessBackend>> ProcessBackend::open(Options options) {
  if (options.execd_binary.empty() || ::access(options.execd_binary.c_str(), X_OK) != 0) {
    return core::make_error(core::Errc::unavailable, "process backend: execd binary '" + options.execd_binary +
                                                         "' is not executable: " + std::strerror(errno));
  }
  if (::access(options.bwrap.c_str(), X_OK) != 0) {
    return core::make_error(core::Errc::unavailable,
                            "process backend: bubblewrap '" + options.bwrap + "' is not executable: " + std::strerror(errno));
  }
  std::error_code ec;
  fs::create_directories(options.state_dir, ec);
  if (options.state_dir.empty() || ec || !fs::is_directory(options.state_dir, ec)) {
    return core::make_error(core::Errc::unavailable, "process backend: cannot make state directory '" +
                                                         options.state_dir + "': " + ec.message());
  }
  options.state_dir = fs::canonical(options.state_dir, ec).string();
  if (!options.rootfs_dir.empty()) {
    const auto root = fs::canonical(options.rootfs_dir, ec);
    if (ec || !fs::is_directory(root, ec)) {
      return core::make_error(core::Errc::unavailable,
                              "process backend: --rootfs-dir '" + options.rootfs_dir + "' is not a directory");
    }
    options.rootfs_dir = root.string();
  }
  if (options.cgroup_name.empty()) options.cgroup_name = "execd-gateway-" + fnv1a_hex(options.state_dir);
  std::unique_ptr<ProcessBackend> backend(new ProcessBackend(std::move(options)));
  return backend;
}

ProcessBackend::ProcessBackend(Options options) : options_(std::move(options)) {
  isolation::CgroupRoot::Options co;
  co.name = options_.cgroup_name;
  co.mountinfo = options_.cgroup_mountinfo;
  co.cpu = true;
  co.keep_groups = true;
  cgroups_ = isolation::CgroupRoot::open(co);
  if (!cgroups_->reason().empty()) spdlog::info("process backend: cgroups: {}", cgroups_->reason());
  if (const std::string interp = elf_interpreter(options_.execd_binary); !interp.empty()) {
    std::error_code ec;
    loader_ = fs::canonical(interp, ec).string();
  }
}

ProcessBackend::~ProcessBackend() = default;

std::string ProcessBackend::sandbox_dir(const std::string& sandbox_id) const {
  return options_.state_dir + "/" + sandbox_id;
}

ResourceLimits ProcessBackend::effective_limits(const SandboxSpec& spec) const {
  ResourceLimits l = spec.limits;
  const ResourceLimits& d = options_.default_limits;
  if (l.cpu_millis == 0) l.cpu_millis = d.cpu_millis;
  if (l.memory_bytes == 0) l.memory_bytes = d.memory_bytes;
  if (l.max_pids == 0) l.max_pids = d.max_pids;
  if (l.disk_bytes == 0) l.disk_bytes = d.disk_bytes;
  return l;
}

core::Result<void> ProcessBackend::validate(const SandboxSpec& spec) const {
  const auto invalid = [](const std::string& m) { return core::make_error(core::Errc::invalid_argument, m); };
  if (spec.image != "host") {
    if (spec.image.empty()) return invalid("image.uri is empty: give 'host' or a root filesystem directory name");
    if (options_.rootfs_dir.empty()) {
      return invalid("image.uri '" + spec.image + "': this gateway has no --rootfs-dir, so only 'host' can run");
    }
    const fs::path rel(spec.image);
    bool dotdot = false;
    for (const auto& part : rel) dotdot = dotdot || part == "..";
    if (rel.is_absolute() || dotdot) {
      return invalid("image.uri '" + spec.image + "' must name a directory under the rootfs dir (no '..', not absolute)");
    }
    std::error_code ec;
    const fs::path full = fs::weakly_canonical(fs::path(options_.rootfs_dir) / rel, ec);
    const std::string prefix = options_.rootfs_dir + "/";
    if (ec || full.string().rfind(prefix, 0) != 0) {
      return invalid("image.uri '" + spec.image + "' leaves the rootfs dir");
    }
    if (!fs::is_directory(full, ec)) {
      return invalid("image.uri '" + spec.image + "': no root filesystem directory " + full.string());
    }
    if (!spec.entrypoint.empty() && !fs::exists(fs::symlink_status(full / "bin/sh", ec))) {
      return invalid("entrypoint: image '" + spec.image + "' has no /bin/sh to start it beside execd");
    }
  }
  const ResourceLimits l = effective_limits(spec);
  const auto need = [&](bool asked, const char* controller, const std::string& field) -> core::Result<void> {
    if (!asked || cgroups_->writable(controller)) return {};
    return invalid(field + ": this host has no writable " + controller + " cgroup controller" +
                   (cgroups_->reason().empty() ? std::string() : " (" + cgroups_->reason() + ")"));
  };
  if (auto r = need(l.memory_bytes > 0, "memory", "resourceLimits.memory"); !r) return r;
  if (auto r = need(l.cpu_millis > 0, "cpu", "resourceLimits.cpu"); !r) return r;
  if (auto r = need(l.max_pids > 0, "pids", "resourceLimits.pids"); !r) return r;
  if (l.disk_bytes > 0 && ::geteuid() != 0) {
    return invalid("resourceLimits.disk: the workspace quota is a tmpfs mount, which needs the gateway to run as root");
  }
  for (const auto& [key, value] : spec.env) {
    if (key.empty() || key.find('=') != std::string::npos || key.find('\0') != std::string::npos ||
        value.find('\0') != std::string::npos) {
      return invalid("env: '" + key + "' is not a valid variable name");
    }
  }
  return {};
}

size_t ProcessBackend::live_count() const {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options_.state_dir, ec)) {
    auto record = SandboxRecord::load(e.path().string() + "/record.json");
    // A directory without a record, or with a reservation, is a create in progress: it takes room too.
    if (!record ? record.error().code == core::Errc::not_found : (record->pid == 0 || record->is_alive())) ++n;
  }
  return n;
}

core::Result<void> ProcessBackend::has_room(const SandboxSpec& spec) const {
  if (options_.max_instances > 0) {
    if (const size_t live = live_count(); live >= options_.max_instances) {
      return core::make_error(core::Errc::unavailable, "process backend: sandboxes: " + std::to_string(live) + " of " +
                                                           std::to_string(options_.max_instances) + " running");
    }
  }
  const ResourceLimits l = effective_limits(spec);
  if (const auto available = memory_available()) {
    if (l.memory_bytes > *available) {
      return core::make_error(core::Errc::unavailable, "process backend: memory: the sandbox asks " +
                                                           mib(l.memory_bytes) + ", the host has " + mib(*available) +
                                                           " available");
    }
    // The workspace quota is a tmpfs: its pages are memory too.
    if (l.disk_bytes > *available) {
      return core::make_error(core::Errc::unavailable, "process backend: memory for the tmpfs workspace: the sandbox asks " +
                                                           mib(l.disk_bytes) + ", the host has " + mib(*available) +
                                                           " available");
    }
  }
  return {};
}

core::Result<Placement> ProcessBackend::create(const std::string& sandbox_id, const SandboxSpec& spec,
                                               const std::string& access_token) {
  InstanceLabels labels;
  labels.access_token = access_token;
  labels.spec = spec;
  return create_labelled(sandbox_id, spec, labels);
}

core::Result<Placement> ProcessBackend::create_labelled(const std::string& sandbox_id, const SandboxSpec& spec,
                                                        const InstanceLabels& labels) {
  if (!is_safe_id(sandbox_id)) {
    return core::make_error(core::Errc::invalid_argument,
                            "sandbox id '" + sandbox_id + "' is not a safe directory name ([A-Za-z0-9._-], 1-128)");
  }
  if (auto r = validate(spec); !r) return r.error();
  const std::string dir = sandbox_dir(sandbox_id);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    const int err = errno;
    // A reservation (no keeper yet) is this create's to take over.
    auto reserved = err == EEXIST ? SandboxRecord::load(dir + "/record.json") : core::Result<SandboxRecord>(core::Error{});
    if (!reserved || reserved->pid != 0) {
      return core::make_error(err == EEXIST ? core::Errc::conflict : core::Errc::unavailable,
                              "process backend: cannot make " + dir + ": " + std::strerror(err));
    }
  }
  auto placed = start(sandbox_id, spec, labels);
  if (!placed) {
    const Placement p{sandbox_id, "127.0.0.1", 0};
    if (auto r = remove(p); !r) spdlog::warn("process backend: cleaning up failed sandbox {}: {}", sandbox_id, r.error().message);
  }
  return placed;
}

core::Result<Placement> ProcessBackend::start(const std::string& sandbox_id, const SandboxSpec& spec,
                                              const InstanceLabels& labels) {
  const std::string& access_token = labels.access_token;
  const std::string dir = sandbox_dir(sandbox_id);
  const std::string workspace = dir + "/workspace";
  const std::string run = dir + "/run";
  const ResourceLimits limits = effective_limits(spec);
  for (const auto& d : {workspace, run}) {
    if (::mkdir(d.c_str(), 0755) != 0) {
      return core::make_error(core::Errc::unavailable, "process backend: cannot make " + d + ": " + std::strerror(errno));
    }
  }
  if (limits.disk_bytes > 0) {
    if (auto r = WorkspaceQuota::mount(workspace, limits.disk_bytes); !r) return r.error();
  }

  // The cgroup, with every limit, exists before anything of the sandbox runs.
  auto group = cgroups_->create(sandbox_id);
  if (!group) {
    // Without a cgroup nothing could be limited or paused; with no limit asked the
    // sandbox still needs one to be killed as a whole.
    return core::make_error(core::Errc::unavailable, "process backend: " + group.error().message);
  }
  std::unique_ptr<isolation::Cgroup> cg = std::move(group).value();
  cg->release();  // the directories outlive this object; remove() finds them by name
  if (limits.memory_bytes > 0) {
    if (auto r = cg->set_memory_limit(limits.memory_bytes); !r) return r.error();
  }
  if (limits.max_pids > 0) {
    if (auto r = cg->set_pids_limit(limits.max_pids); !r) return r.error();
  }
  if (limits.cpu_millis > 0) {
    if (auto r = cg->set_cpu_quota(limits.cpu_millis); !r) return r.error();
  }

  SandboxRecord record;
  record.sandbox_id = sandbox_id;
  record.cgroup = sandbox_id;
  record.disk_bytes = limits.disk_bytes;
  record.memory_bytes = limits.memory_bytes;
  record.labels = labels;

  // What bwrap runs: execd, directly or through the host's loader for a root filesystem.
  const bool rootfs = spec.image != "host";
  isolation::BwrapCommand::Options bo;
  bo.bwrap = options_.bwrap;
  bo.network = true;  // shared with the host: the gateway reaches execd on 127.0.0.1
  bo.workspace = workspace;
  bo.workspace_target = kInsideWorkspace;
  bo.hostname = sandbox_id.substr(0, 63);
  bo.die_with_parent = false;
  bo.binds.push_back({options_.execd_binary, kInsideExecd, false});
  bo.binds.push_back({run, kInsideRun, true});
  std::vector<std::string> execd_argv;
  if (rootfs && !loader_.empty()) {
    const fs::path loader(loader_);
    bo.binds.push_back({loader.parent_path().string(), kInsideLib, false});
    execd_argv = {std::string(kInsideLib) + "/" + loader.filename().string(), "--library-path", kInsideLib};
  }
  execd_argv.insert(execd_argv.end(), {kInsideExecd, "--host", "127.0.0.1", "--port", "0", "--port-file",
                                       std::string(kInsideRun) + "/port", "--isolation", "none"});
  std::vector<std::string> inner = execd_argv;
  if (!spec.entrypoint.empty()) {
    std::string script;
    for (const auto& a : spec.entrypoint) script += shell_quote(a) + " ";
    script += "</dev/null &\nexec \"$@\"\n";
    inner = {"/bin/sh", "-c", script, "sh"};
    inner.insert(inner.end(), execd_argv.begin(), execd_argv.end());
  }
  // The token reaches execd as EXECD_ACCESS_TOKEN (read when no flag is given), so that,
  // like the spec's env, it is only in bwrap's options, which travel through a file
  // (--args) and not on a command line every user of the host can read. The sandbox's
  // own code may see it: it may reach its own execd anyway.
  std::map<std::string, std::string> env = spec.env;
  env.emplace("PATH", kDefaultPath);
  env.emplace("HOME", kInsideWorkspace);
  env["EXECD_ACCESS_TOKEN"] = access_token;
  for (const auto& [k, v] : env) bo.env.push_back(k + "=" + v);

  core::Result<isolation::SystemLayout> layout = isolation::SystemLayout::host(options_.bwrap);
  if (rootfs) layout = isolation::SystemLayout::of_rootfs(options_.rootfs_dir + "/" + spec.image, options_.bwrap);
  if (!layout) return layout.error();
  auto bwrap_argv = isolation::BwrapCommand::build(bo, inner, *layout);
  if (!bwrap_argv) return bwrap_argv.error();
  // bwrap's options (binds, env, token) into a 0600 file it reads with --args; the
  // command after "--" must stay on its command line.
  const size_t command_at = bwrap_argv->size() - inner.size();
  if (command_at < 2 || (*bwrap_argv)[command_at - 1] != "--") {
    return core::make_error(core::Errc::internal, "process backend: unexpected bubblewrap argv shape");
  }
  std::string options_blob;
  for (size_t i = 1; i + 1 < command_at; ++i) options_blob += (*bwrap_argv)[i] + '\0';
  const std::string args_file = dir + "/bwrap.args";
  {
    core::UniqueFd fd(::open(args_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid() || !core::write_all(fd.get(), options_blob)) {
      return core::make_error(core::Errc::unavailable, "process backend: cannot write " + args_file + ": " +
                                                           std::strerror(errno));
    }
  }

  // The launcher joins the cgroup before exec, so everything after it is inside.
  auto fds = cg->procs_fds();
  if (!fds) return fds.error();
  isolation::ChildSteps steps;
  steps.cgroup_procs_fds = *fds;
  process::SpawnOptions so;
  so.argv = {"/bin/sh", "-c", kKeeperScript, "execd-sandbox-keeper", dir + "/exit_status", dir + "/keeper.pid",
             args_file, options_.bwrap, "--args", "3", "--"};
  so.argv.insert(so.argv.end(), inner.begin(), inner.end());
  so.env = {std::string("PATH=") + kDefaultPath};
  so.cwd = dir;
  so.output_file = dir + "/log";
  so.child_setup = &join_cgroup;
  so.child_setup_arg = &steps;
  auto launcher = options_.reaper != nullptr ? options_.reaper->spawn(so) : process::spawn(so);
  cg->release();  // the cgroup.procs descriptors are not needed past the spawn
  if (!launcher) return core::make_error(core::Errc::unavailable, "process backend: " + launcher.error().message);
  const auto waited = wait_launcher(launcher->pid, std::chrono::seconds(5));
  if (options_.reaper != nullptr) options_.reaper->disown(launcher->pid);
  if (!waited) return waited.error();

  const std::string pid_text = trim(core::read_file(dir + "/keeper.pid"));
  try {
    record.pid = static_cast<pid_t>(std::stol(pid_text));
  } catch (...) {
    return core::make_error(core::Errc::unavailable,
                            "process backend: the launcher recorded no keeper pid; log: " + file_tail(dir + "/log"));
  }
  const auto started = process_start_time(record.pid);
  record.start_time = started.value_or(0);
  if (auto r = record.save(dir + "/record.json"); !r) return r.error();

  // Bounded wait for execd's port file; an early end of the keeper is a failed start.
  const auto deadline = Clock::now() + options_.start_timeout;
  for (;;) {
    if (const auto port = read_port(run + "/port")) {
      ::unlink(args_file.c_str());  // read by bwrap long ago; the token need not stay on disk
      return Placement{sandbox_id, "127.0.0.1", *port};
    }
    reap_if_child(record.pid);
    if (!started || !record.is_alive()) {
      auto again = cgroups_->open_existing(record.cgroup);
      if (again) (*again)->release();
      return core::make_error(core::Errc::unavailable,
                              "execd did not start in sandbox " + sandbox_id + ": " +
                                  exit_description(dir, record, again ? again->get() : nullptr) +
                                  "; log: " + file_tail(dir + "/log"));
    }
    if (Clock::now() >= deadline) {
      return core::make_error(core::Errc::unavailable, "execd did not write its port within " +
                                                           std::to_string(options_.start_timeout.count()) +
                                                           " ms in sandbox " + sandbox_id +
                                                           "; log: " + file_tail(dir + "/log"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

core::Result<InstanceStatus> ProcessBackend::inspect(const Placement& placement) {
  InstanceStatus status;
  if (!is_safe_id(placement.handle)) return status;  // gone: no such directory can exist
  const std::string dir = sandbox_dir(placement.handle);
  if (!exists(dir)) return status;
  auto record = SandboxRecord::load(dir + "/record.json");
  if (!record || record->pid == 0) {
    if (!record && record.error().code != core::Errc::not_found) return record.error();
    status.phase = InstanceStatus::Phase::starting;  // reserved or created, keeper not yet recorded
    return status;
  }
  reap_if_child(record->pid);
  auto group = cgroups_->open_existing(record->cgroup);
  if (group) (*group)->release();
  if (record->is_alive()) {
    if (group && (*group)->is_frozen()) {
      status.phase = InstanceStatus::Phase::paused;
    } else if (!read_port(dir + "/run/port")) {
      status.phase = InstanceStatus::Phase::starting;
    } else {
      status.phase = InstanceStatus::Phase::running;
    }
    return status;
  }
  status.phase = InstanceStatus::Phase::exited;
  status.message = exit_description(dir, *record, group ? group->get() : nullptr);
  return status;
}

core::Result<void> ProcessBackend::freeze(const Placement& placement, bool frozen) {
  const char* verb = frozen ? "pause" : "resume";
  const std::string dir = sandbox_dir(placement.handle);
  auto record = is_safe_id(placement.handle) ? SandboxRecord::load(dir + "/record.json")
                                             : core::Result<SandboxRecord>(core::Error{core::Errc::not_found, ""});
  if (!record) {
    return core::make_error(core::Errc::not_found, std::string("cannot ") + verb + " sandbox " + placement.handle +
                                                       ": it is gone");
  }
  reap_if_child(record->pid);
  auto group = cgroups_->open_existing(record->cgroup);
  if (group) (*group)->release();
  if (!record->is_alive()) {
    return core::make_error(core::Errc::conflict, std::string("cannot ") + verb + " sandbox " + placement.handle +
                                                      ": it is not running (" +
                                                      exit_description(dir, *record, group ? group->get() : nullptr) +
                                                      ")");
  }
  if (!group) return group.error();
  if (auto r = (*group)->freeze(frozen); !r) {
    return core::make_error(r.error().code, std::string("cannot ") + verb + " sandbox " + placement.handle + ": " +
                                                r.error().message);
  }
  return {};
}

core::Result<void> ProcessBackend::pause(const Placement& placement) { return freeze(placement, true); }

core::Result<void> ProcessBackend::resume(const Placement& placement) { return freeze(placement, false); }

core::Result<void> ProcessBackend::remove(const Placement& placement) {
  if (!is_safe_id(placement.handle)) return {};  // no directory of that name can exist
  const std::string dir = sandbox_dir(placement.handle);
  auto record = SandboxRecord::load(dir + "/record.json");
  const pid_t keeper = record ? record->pid : 0;
  const std::string cgroup = record && !record->cgroup.empty() ? record->cgroup : placement.handle;
  if (auto group = cgroups_->open_existing(cgroup)) {
    // Killed tasks that are our children (a subreaper gateway inherits the keeper and
    // bwrap's orphans) must be collected, or they would hold the group.
    const auto reap = [keeper](const std::vector<pid_t>& killed) {
      for (const pid_t p : killed) reap_if_child(p);
      reap_if_child(keeper);
    };
    if (auto r = (*group)->remove(reap); !r) {
      (*group)->release();
      return core::make_error(r.error().code, "cannot remove sandbox " + placement.handle + ": " + r.error().message);
    }
  } else if (group.error().code != core::Errc::not_found && group.error().code != core::Errc::not_supported) {
    return group.error();
  }
  reap_if_child(keeper);
  if (auto r = WorkspaceQuota::unmount(dir + "/workspace"); !r) return r;
  std::lock_guard<std::mutex> lock(records_mu_);
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec && exists(dir)) {
    return core::make_error(core::Errc::unavailable, "cannot remove " + dir + ": " + ec.message());
  }
  return {};
}

std::optional<Instance> ProcessBackend::instance_in(const std::string& id, const std::string& dir) {
  auto record = SandboxRecord::load(dir + "/record.json");
  if (!record) return std::nullopt;
  if (record->pid == 0) {
    // Reserved: known (and whose) before its keeper starts.
    if (!record->labels) return std::nullopt;
    Instance reserved;
    reserved.sandbox_id = record->sandbox_id.empty() ? id : record->sandbox_id;
    reserved.placement = Placement{id, "127.0.0.1", 0};
    reserved.status.phase = InstanceStatus::Phase::starting;
    reserved.labels = record->labels;
    return reserved;
  }
  reap_if_child(record->pid);
  if (!record->is_alive()) return std::nullopt;
  Instance instance;
  instance.sandbox_id = record->sandbox_id.empty() ? id : record->sandbox_id;
  instance.placement = Placement{id, "127.0.0.1", read_port(dir + "/run/port").value_or(0)};
  auto status = inspect(instance.placement);
  if (status) instance.status = *status;
  instance.labels = record->labels;
  return instance;
}

core::Result<std::vector<Instance>> ProcessBackend::list() {
  std::vector<Instance> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options_.state_dir, ec)) {
    const std::string id = e.path().filename().string();
    if (!is_safe_id(id)) continue;
    if (auto instance = instance_in(id, e.path().string())) out.push_back(std::move(*instance));
  }
  if (ec) return core::make_error(core::Errc::unavailable, "cannot list " + options_.state_dir + ": " + ec.message());
  return out;
}

core::Result<std::optional<Instance>> ProcessBackend::find(const std::string& sandbox_id) {
  if (!is_safe_id(sandbox_id)) return std::optional<Instance>();
  return instance_in(sandbox_id, sandbox_dir(sandbox_id));
}

core::Result<Placement> ProcessBackend::reserve(const std::string& sandbox_id, const InstanceLabels& labels) {
  if (!is_safe_id(sandbox_id)) {
    return core::make_error(core::Errc::invalid_argument,
                            "sandbox id '" + sandbox_id + "' is not a safe directory name ([A-Za-z0-9._-], 1-128)");
  }
  const std::string dir = sandbox_dir(sandbox_id);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    const int err = errno;
    return core::make_error(err == EEXIST ? core::Errc::conflict : core::Errc::unavailable,
                            "process backend: cannot make " + dir + ": " + std::strerror(err));
  }
  SandboxRecord record;
  record.sandbox_id = sandbox_id;
  record.labels = labels;
  if (auto r = record.save(dir + "/record.json"); !r) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    return r.error();
  }
  return Placement{sandbox_id, "127.0.0.1", 0};
}

core::Result<void> ProcessBackend::relabel(const Placement& placement, const InstanceLabels& labels) {
  if (!is_safe_id(placement.handle)) return core::make_error(core::Errc::not_found, "no sandbox " + placement.handle);
  const std::string path = sandbox_dir(placement.handle) + "/record.json";
  std::lock_guard<std::mutex> lock(records_mu_);
  auto record = SandboxRecord::load(path);
  if (!record) return record.error();
  record->labels = labels;
  return record->save(path);
}

}  // namespace execd::gateway
