#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace execd::test {

/// A dockerd of the test's own, as root: its own --data-root, --exec-root, pidfile and
/// unix socket under a fresh directory, no default bridge, no iptables rules and no
/// ip_forward change unless Options::iptables (nothing outside its directory is touched
/// but the bridges of the networks its containers use, which it removes), and an address
/// pool of its own so two
/// at once do not collide. The constructor returns once the engine answers /_ping and
/// throws with the daemon's log if it does not within a minute. The destructor removes
/// every container and network it holds, stops it (SIGTERM, then SIGKILL after 20 s),
/// unmounts what it left mounted and deletes its directory.
class PrivateDockerd {
 public:
  struct Options {
    /// dockerd's own firewall (--iptables, --ip-forward): the rules that keep one bridge
    /// network from reaching another. Only in a network namespace of the test's own (the
    /// calling thread's, which the daemon inherits; not its parent's): the constructor
    /// throws otherwise, so the host's firewall and forwarding are never touched.
    bool iptables = false;
    /// OCI runtimes registered beside runc (--add-runtime NAME=PATH), as an operator
    /// registers runsc.
    std::vector<std::pair<std::string, std::string>> runtimes;
  };

  PrivateDockerd() : PrivateDockerd(Options{}) {}
  explicit PrivateDockerd(Options options);
  ~PrivateDockerd();
  PrivateDockerd(const PrivateDockerd&) = delete;
  PrivateDockerd& operator=(const PrivateDockerd&) = delete;

  /// "unix:///tmp/execd-dockerd-XXXXXX/docker.sock": DOCKER_HOST's form.
  [[nodiscard]] std::string host() const { return "unix://" + socket_.string(); }
  [[nodiscard]] const std::filesystem::path& socket() const { return socket_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  /// What the daemon wrote so far (its stdout and stderr).
  [[nodiscard]] std::string log() const;

  /// Imports a root filesystem holding only a static busybox (/bin/busybox, its applets
  /// as symlinks, empty /tmp, /etc, /proc, /sys, /dev) as `reference` ("name:tag")
  /// through the Engine API (POST /images/create?fromSrc=-). Throws on failure.
  void import_busybox_image(const std::string& reference) const;

  /// Imports the directory `root` as the image `reference` ("name:tag") through the
  /// Engine API, files owned by root whoever owns them here. Throws on failure.
  void import_tree(const std::string& reference, const std::filesystem::path& root) const;

 private:
  void stop(std::chrono::seconds grace);

  std::filesystem::path dir_;
  std::filesystem::path socket_;
  pid_t pid_ = -1;
};

}  // namespace execd::test
