#include "support/private_dockerd.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "http/client.hpp"
#include "support/temp_dir.hpp"

namespace execd::test {

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kDockerd = "/usr/sbin/dockerd";
constexpr const char* kBusybox = "/bin/busybox";

http::ClientResponse engine_call(const fs::path& socket, const std::string& method, const std::string& target,
                                 std::string body = "", const std::string& content_type = "application/json",
                                 std::chrono::milliseconds timeout = 30s) {
  http::ClientRequest req;
  req.method = method;
  req.target = target;
  req.timeout = timeout;
  if (!body.empty()) {
    req.headers.emplace_back("Content-Type", content_type);
    req.body = std::move(body);
  }
  auto r = http::send_request(http::ClientEndpoint{"", 0, socket.string()}, req);
  if (!r) throw std::runtime_error("private dockerd: " + method + " " + target + ": " + r.error().message);
  return *r;
}

/// Output of a shell command, and whether it exited 0.
std::pair<std::string, bool> run(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return {"popen failed", false};
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  return {out, pclose(f) == 0};
}

/// True unless the calling thread is in a network namespace other than the one the test
/// program was started in (its parent's: the host's). pid 1's may not be readable here.
bool in_host_network_namespace() {
  struct stat mine {};
  struct stat host {};
  const std::string parent = "/proc/" + std::to_string(getppid()) + "/ns/net";
  if (stat("/proc/thread-self/ns/net", &mine) != 0 || stat(parent.c_str(), &host) != 0) return true;
  return mine.st_ino == host.st_ino && mine.st_dev == host.st_dev;
}

}  // namespace

PrivateDockerd::PrivateDockerd(Options options) {
  if (geteuid() != 0) throw std::runtime_error("private dockerd: needs root");
  if (options.iptables && in_host_network_namespace()) {
    throw std::runtime_error("private dockerd: --iptables only in a network namespace of the test's own, never the host's");
  }
  if (access(kDockerd, X_OK) != 0) throw std::runtime_error("private dockerd: no " + std::string(kDockerd) + " (apt-get install docker.io)");
  // A short path: the socket's must fit sockaddr_un, and /tmp is local (overlay2 needs that).
  std::string tmpl = "/tmp/execd-dockerd-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("private dockerd: mkdtemp failed");
  dir_ = tmpl;
  socket_ = dir_ / "docker.sock";

  // Each instance its own /16 out of 10.128.0.0/9, so two test runs do not hand out the
  // same subnets; docker also skips pools that overlap the host's routes.
  const int octet = 128 + static_cast<int>(getpid() % 120);
  const std::string firewall = options.iptables ? "true" : "false";
  std::vector<std::string> args = {
      kDockerd,
      "--data-root=" + (dir_ / "data").string(),
      "--exec-root=" + (dir_ / "exec").string(),
      "--pidfile=" + (dir_ / "docker.pid").string(),
      "--host=unix://" + socket_.string(),
      "--bridge=none",
      "--iptables=" + firewall,
      "--ip6tables=false",
      "--ip-forward=" + firewall,
      "--ip-masq=false",
      "--userland-proxy=false",
      "--default-address-pool=base=10." + std::to_string(octet) + ".0.0/16,size=24",
      "--log-level=warn",
      "--shutdown-timeout=5",
  };
  for (const auto& [name, path] : options.runtimes) args.push_back("--add-runtime=" + name + "=" + path);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::string log_path = (dir_ / "dockerd.log").string();

  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error(std::string("private dockerd: fork: ") + std::strerror(errno));
  if (pid_ == 0) {
    // SIGTERM, not SIGKILL: a dockerd told to stop takes its containers and containerd down.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    setsid();
    const int devnull = open("/dev/null", O_RDONLY);
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(devnull, STDIN_FILENO);
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    execv(kDockerd, argv.data());
    _exit(127);
  }

  const auto deadline = std::chrono::steady_clock::now() + 60s;
  std::string last_error;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      const auto log = this->log();
      std::error_code ec;
      fs::remove_all(dir_, ec);
      throw std::runtime_error("private dockerd exited at start; its log:\n" + log);
    }
    if (fs::exists(socket_)) {
      try {
        if (engine_call(socket_, "GET", "/_ping", "", "", 2s).status == 200) return;
      } catch (const std::exception& e) {
        last_error = e.what();
      }
    }
    std::this_thread::sleep_for(100ms);
  }
  const auto log = this->log();
  stop(5s);
  throw std::runtime_error("private dockerd did not answer /_ping in 60 s (" + last_error + "); its log:\n" + log);
}

PrivateDockerd::~PrivateDockerd() { stop(20s); }

std::string PrivateDockerd::log() const { return read_file(dir_ / "dockerd.log"); }

void PrivateDockerd::stop(std::chrono::seconds grace) {
  if (pid_ > 0) {
    // Containers and networks first, through the API: a force-remove is quicker than the
    // daemon's own stop-everything on SIGTERM, and it takes the bridges down with them.
    try {
      auto list = engine_call(socket_, "GET", "/containers/json?all=true");
      auto containers = nlohmann::json::parse(list.body, nullptr, false);
      if (containers.is_array()) {
        for (const auto& c : containers) {
          if (c.contains("Id")) engine_call(socket_, "DELETE", "/containers/" + c["Id"].get<std::string>() + "?force=true&v=true");
        }
      }
      auto nets = nlohmann::json::parse(engine_call(socket_, "GET", "/networks").body, nullptr, false);
      if (nets.is_array()) {
        for (const auto& n : nets) {
          const auto name = n.value("Name", "");
          if (name != "none" && name != "host" && name != "bridge") engine_call(socket_, "DELETE", "/networks/" + n.value("Id", ""));
        }
      }
    } catch (const std::exception&) {
      // The daemon is not answering: SIGTERM below is all that is left.
    }
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    bool reaped = false;
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        reaped = true;
        break;
      }
      std::this_thread::sleep_for(50ms);
    }
    if (!reaped) {
      kill(-pid_, SIGKILL);  // its group: containerd and the shims it started
      waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }
  if (dir_.empty()) return;
  // overlay2 and containerd leave mounts under data-root and exec-root; deepest first.
  std::vector<std::string> mounts;
  {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string id, parent, devno, root, point;
      fields >> id >> parent >> devno >> root >> point;
      if (point.rfind(dir_.string() + "/", 0) == 0) mounts.push_back(point);
    }
  }
  std::sort(mounts.begin(), mounts.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& m : mounts) umount2(m.c_str(), MNT_DETACH);
  std::error_code ec;
  fs::remove_all(dir_, ec);
  dir_.clear();
}

void PrivateDockerd::import_busybox_image(const std::string& reference) const {
  // ldd fails on a static binary ("not a dynamic executable").
  if (access(kBusybox, X_OK) != 0 || run(std::string("ldd ") + kBusybox + " >/dev/null 2>&1").second) {
    throw std::runtime_error(std::string("private dockerd: ") + kBusybox + " is not a static busybox (apt-get install busybox-static)");
  }
  TempDir root;
  for (const char* d : {"bin", "tmp", "etc", "proc", "sys", "dev", "root"}) fs::create_directories(root.path() / d);
  fs::permissions(root.path() / "tmp", fs::perms::all | fs::perms::sticky_bit);
  fs::copy_file(kBusybox, root.path() / "bin/busybox");
  auto applets = run(std::string(kBusybox) + " --list");
  if (!applets.second) throw std::runtime_error("private dockerd: busybox --list failed");
  std::istringstream names(applets.first);
  std::string name;
  while (std::getline(names, name)) {
    if (!name.empty() && name != "busybox") fs::create_symlink("busybox", root.path() / "bin" / name);
  }
  root.write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
  root.write("etc/group", "root:x:0:\nnogroup:x:65534:\n");
  import_tree(reference, root.path());
}

void PrivateDockerd::import_tree(const std::string& reference, const fs::path& root) const {
  auto tar = run("tar -C '" + root.string() + "' --numeric-owner --owner=0 --group=0 -cf - .");
  if (!tar.second) throw std::runtime_error("private dockerd: tar of " + root.string() + " failed");

  const auto colon = reference.rfind(':');
  const std::string repo = colon == std::string::npos ? reference : reference.substr(0, colon);
  const std::string tag = colon == std::string::npos ? "latest" : reference.substr(colon + 1);
  auto r = engine_call(socket_, "POST", "/images/create?fromSrc=-&repo=" + repo + "&tag=" + tag, std::move(tar.first),
                       "application/x-tar", 300s);
  if (r.status != 200 || r.body.find("\"error\"") != std::string::npos) {
    throw std::runtime_error("private dockerd: import of " + reference + " failed: HTTP " + std::to_string(r.status) + " " + r.body);
  }
}

}  // namespace execd::test
