#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "core/result.hpp"
#include "jupyter/hmac_signer.hpp"
#include "jupyter/message.hpp"

namespace execd::jupyter {

/// Where a kernel listens (its connection file).
struct ConnectionInfo {
  std::string ip = "127.0.0.1";  ///< ipc: the socket files' path prefix
  std::string transport = "tcp";  ///< or "ipc": socket files `<ip>-<port>` (a sandboxed kernel)
  int shell_port = 0, iopub_port = 0, stdin_port = 0, control_port = 0, hb_port = 0;
  std::string key;
};

enum class Channel { shell, iopub, control, stdin_ };

/// The ZeroMQ side of one kernel: DEALER shell/control/stdin, SUB iopub, REQ heartbeat,
/// all owned by one IO thread (ZeroMQ sockets are not thread-safe), which signs what it
/// sends, verifies what it receives (bad signatures are dropped and logged), and hands
/// each message to the handler registered for its parent msg_id (on the IO thread; the
/// message's FrameText views are valid only during that call). Other threads send
/// through a queue and an inproc wake-up, so a request leaves at once.
class KernelClient {
 public:
  using Handler = std::function<void(const Message&, Channel)>;

  /// Connects; `pidfd` (may be -1) is watched so a kernel's exit is noticed at once.
  KernelClient(ConnectionInfo info, int pidfd);
  ~KernelClient();
  KernelClient(const KernelClient&) = delete;
  KernelClient& operator=(const KernelClient&) = delete;

  /// Registers `handler` for replies and output whose parent is `m`, then sends `m`.
  void send(Channel channel, Message m, Handler handler);
  void forget(const std::string& msg_id);
  /// Called once, on the IO thread, when the kernel is found dead (process exit or no
  /// heartbeat for `hb_timeout`), with the reason.
  void on_dead(std::function<void(const std::string&)> callback);
  /// From now on, no heartbeat for 5 s counts as death. Before this only the process's
  /// exit does: a kernel still booting (twenty Python kernels importing on two cores)
  /// answers pings only once its heartbeat thread runs; its start has its own deadline.
  void watch_heartbeat();
  [[nodiscard]] bool is_dead() const { return dead_.load(); }
  [[nodiscard]] const std::string& session() const { return session_; }

 private:
  struct Impl;
  void run();
  void loop();

  ConnectionInfo info_;
  int pidfd_;
  HmacSigner signer_;
  std::string session_;
  std::unique_ptr<Impl> impl_;
  std::mutex mu_;
  std::deque<std::pair<Channel, Message>> outbox_;
  std::unordered_map<std::string, Handler> handlers_;
  std::function<void(const std::string&)> on_dead_;
  std::atomic<bool> dead_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> heartbeat_watched_{false};
  std::thread thread_;
};

}  // namespace execd::jupyter
