#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "isolation/execution_guard.hpp"
#include "isolation/limits.hpp"
#include "process/child_reaper.hpp"
#include "process/reactor.hpp"
#include "pty/scrollback.hpp"

namespace execd::pty {

/// How the shell's stdio is wired: a pseudo-terminal (colours, stty, job control, vim),
/// or pipes with stdout and stderr apart.
enum class PtyMode { pty, pipe };

/// Channels of output bytes (the WebSocket's first byte).
inline constexpr uint8_t kStdout = 1;
inline constexpr uint8_t kStderr = 2;

/// What POST /pty asked for.
struct PtySpec {
  std::string cwd;                          ///< empty: the daemon's
  std::map<std::string, std::string> envs;  ///< on top of the base environment
  uint16_t cols = 80;
  uint16_t rows = 24;
  /// The shell's isolation for its whole life (the request's fields over the daemon's
  /// defaults): process (cgroup, limits, no_new_privs) or namespace (that, inside
  /// bubblewrap; in PTY mode without bwrap's --new-session, so the shell keeps the
  /// terminal as its controlling tty). max_output_bytes does not apply (the scrollback is
  /// bounded).
  isolation::Limits limits;
};

/// A session's state for GET /pty/{id}.
struct PtyStatus {
  std::string id;
  bool started = false;
  bool running = false;
  std::optional<int> exit_code;  ///< once exited: the code, or 128 + signal
  PtyMode mode = PtyMode::pty;
  pid_t pid = 0;               ///< the shell's, or bwrap's at namespace level (0 before start)
  uint64_t output_offset = 0;  ///< the offset after the newest output byte
  uint64_t output_begin = 0;   ///< the oldest offset still replayable
  uint16_t cols = 80;
  uint16_t rows = 24;
  bool attached = false;
  std::string cwd;
  int64_t created_at_ms = 0;  ///< Unix ms
};

/// One interactive bash, started on the first attach (start()), in its own session and
/// process group with none of the daemon's descriptors, a fresh environment (never the
/// daemon's, so never its token) and, in PTY mode, the terminal as its controlling tty
/// (setsid + TIOCSCTTY) with TERM=xterm-256color. At namespace level the spawned child is
/// bwrap holding that terminal; the shell inside (pid 2 of its pid namespace) is in the
/// same session, so it takes the terminal's foreground and job control works as outside.
///
/// Output is read on the reactor thread into a Scrollback; readers (the WebSocket's pump)
/// follow it by offset. The exit is seen through the pidfd: the shell is reaped, what it
/// left in the terminal or pipes drained, then the scrollback closed, so a reader that
/// reaches the end of a closed scrollback has everything and may report the exit.
///
/// One attached holder at a time: attach() with takeover calls the previous holder's
/// evict function (which closes its WebSocket with 4001) before the new one owns the
/// session. Every method is thread-safe.
class PtySession : public std::enable_shared_from_this<PtySession> {
 public:
  struct Deps {
    std::shared_ptr<process::Reactor> reactor;
    std::shared_ptr<process::ChildReaper> reaper;
    std::vector<std::string> base_env;              ///< KEY=VALUE before the spec's envs (PATH, HOME, ...)
    std::shared_ptr<isolation::Isolator> isolator;  ///< null: only level none without limits
    Scrollback::Options scrollback;
    std::chrono::milliseconds kill_wait{5000};  ///< terminate() waits this long for the reap
  };

  PtySession(std::string id, PtySpec spec, Deps deps);
  ~PtySession();  ///< terminate()
  PtySession(const PtySession&) = delete;
  PtySession& operator=(const PtySession&) = delete;

  [[nodiscard]] const std::string& id() const { return id_; }
  /// Starts the shell in `mode` if it has not started yet (a later call keeps the mode
  /// it started in). Errors: unavailable when the spawn or openpty fails (naming the step),
  /// conflict when the session was terminated.
  core::Result<void> start(PtyMode mode);
  [[nodiscard]] PtyStatus status() const;
  [[nodiscard]] PtyMode mode() const;
  [[nodiscard]] Scrollback& output() { return output_; }
  [[nodiscard]] std::optional<int> exit_code() const;

  /// Makes the caller the holder. conflict when someone holds it and `takeover` is false;
  /// with takeover the old holder's `evict` runs (on this thread, without locks held).
  /// Returns the holder's token for detach().
  core::Result<uint64_t> attach(bool takeover, std::function<void()> evict);
  /// Ends holding `token` (no-op if someone took over since).
  void detach(uint64_t token);
  /// Since when nobody holds it (its creation or last detach); nullopt while held.
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> idle_since() const;

  /// Bytes for the shell's stdin (the terminal in PTY mode), waiting up to 5 s while it is
  /// full. conflict before start or after exit, unavailable when it does not take them.
  core::Result<void> write_stdin(std::string_view bytes);
  /// TIOCSWINSZ (the kernel sends SIGWINCH to the foreground group). invalid_argument for
  /// 0 or over 1000; in pipe mode the size is only recorded.
  core::Result<void> resize(uint16_t cols, uint16_t rows);
  /// A signal by name (SIGINT, INT, 2, ...) to the terminal's foreground process group in
  /// PTY mode, to the shell's group in pipe mode (at namespace level: to the sandbox's
  /// processes, never bwrap's own group). invalid_argument for an unknown name.
  core::Result<void> signal(const std::string& name);
  /// Kills every process of the shell's session (job-control groups included) and waits
  /// (bounded) until the shell is reaped; the session can no longer start or be attached.
  /// A holder is not evicted: its reader sees the output close, then the exit code.
  void terminate();

 private:
  void on_readable(int fd, uint8_t channel);
  void on_exit();
  void drain(int fd, uint8_t channel);
  void stop_watching();
  void kill_session(int sig);

  std::string id_;
  PtySpec spec_;
  Deps deps_;
  Scrollback output_;
  int64_t created_at_ms_ = 0;

  mutable std::mutex mu_;
  std::condition_variable exited_cv_;
  bool started_ = false;
  bool terminated_ = false;
  bool running_ = false;
  std::optional<int> exit_code_;
  PtyMode mode_ = PtyMode::pty;
  pid_t pid_ = -1;
  uint16_t cols_ = 80;
  uint16_t rows_ = 24;
  uint64_t holder_ = 0;  // 0: nobody
  uint64_t next_token_ = 1;
  std::function<void()> evict_;
  std::chrono::steady_clock::time_point idle_since_;

  // Set by start() (under mu_), then read by the reactor thread and writers.
  core::UniqueFd pidfd_;
  core::UniqueFd out_fd_;                             // the terminal's master side, or the stdout pipe
  core::UniqueFd err_fd_;                             // pipe mode only
  core::UniqueFd in_fd_;                              // pipe mode: the stdin pipe; PTY mode: a dup of the master
  std::unique_ptr<isolation::ExecutionGuard> guard_;  // set by start() when isolated
  std::mutex write_mu_;                               // one stdin writer at a time, so input is never interleaved
};

/// "SIGINT", "INT", "int" or "2" to the signal number; invalid_argument otherwise.
core::Result<int> signal_by_name(const std::string& name);

}  // namespace execd::pty
