#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/result.hpp"
#include "exec/event_source.hpp"
#include "files/path_resolver.hpp"

namespace execd::api {

/// The live file watches behind GET /files/watch. Readers of the same (path, recursive)
/// share one files::FileWatch, whose batches are appended to one exec::EventLog: a
/// reconnect with Last-Event-ID resumes exactly where it left off while the watch lives.
/// A watch lives while it has readers and `linger` after the last one leaves, then stops;
/// it also ends (terminal `watch_end` event) when its directory disappears. At most
/// `max_watches` watches at once (unavailable beyond). Thread-safe; a janitor thread
/// retires watches.
class WatchHub : public std::enable_shared_from_this<WatchHub> {
 public:
  struct Options {
    size_t max_watches = 64;
    size_t max_dirs = 8192;
    std::chrono::milliseconds linger{30000};
    std::chrono::milliseconds coalesce{50};
    std::string spill_dir;
  };

  WatchHub(files::PathResolver resolver, Options options);
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  /// A reader's view of the watch of `path`: an EventSource that keeps the watch alive
  /// until it is destroyed. `fresh` tells whether the watch was started now (a resume
  /// position from an earlier watch means nothing then).
  struct Attached {
    std::shared_ptr<exec::EventSource> source;
    bool fresh = false;
  };
  core::Result<Attached> attach(const std::string& path, bool recursive);

  struct Session;

 private:
  void detach(Session& s);
  void janitor();

  files::PathResolver resolver_;
  Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::thread janitor_;
};

}  // namespace execd::api
