#include "files/file_watch.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <unordered_map>

#include <spdlog/spdlog.h>

namespace execd::files {

namespace {
constexpr uint32_t kMask = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                           IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK;
constexpr size_t kMaxBatch = 4096;
using Clock = std::chrono::steady_clock;

std::string kind_of(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "directory";
  if (S_ISLNK(m)) return "symlink";
  return "other";
}

std::string join(const std::string& dir, const std::string& name) { return dir == "/" ? "/" + name : dir + "/" + name; }
}  // namespace

struct FileWatch::State {
  PathResolver resolver;
  std::string root;
  Options options;
  EventsFn on_events;
  EndFn on_end;
  core::UniqueFd inotify;
  core::UniqueFd stop;
  int root_wd = -1;
  std::unordered_map<int, std::string> dirs;  // wd -> absolute path
  std::atomic<size_t> dir_count{0};
  bool overflow_reported = false;

  std::vector<WatchEvent> batch;
  std::map<std::string, size_t> at;                  // path -> index in batch (coalescing)
  std::map<uint32_t, std::pair<std::string, bool>> moves;  // cookie -> (from, is_dir)
  Clock::time_point first_pending{};

  explicit State(PathResolver r) : resolver(std::move(r)) {}

  bool add_dir(const std::string& abs) {
    if (dir_count >= options.max_dirs) {
      if (!overflow_reported) {
        overflow_reported = true;
        WatchEvent e;
        e.type = "overflow";
        e.path = abs;
        e.kind = "directory";
        push(std::move(e));
        spdlog::warn("file watch on {}: more than {} directories, {} and others not watched", root, options.max_dirs, abs);
      }
      return false;
    }
    auto fd = resolver.open_dir(abs, true);
    if (!fd) return false;
    const std::string proc = "/proc/self/fd/" + std::to_string(fd->get());
    const int wd = ::inotify_add_watch(inotify.get(), proc.c_str(), kMask);
    if (wd < 0) return false;
    if (dirs.emplace(wd, abs).second) ++dir_count;
    else dirs[wd] = abs;
    return true;
  }

  /// Watches the directories below `abs`; `report` also reports what is found as created
  /// (a directory that appeared after the watch started may already hold files).
  void add_tree(const std::string& abs, bool report, int depth) {
    if (depth > 64) return;
    auto fd = resolver.open_dir(abs, false);
    if (!fd) return;
    DIR* d = ::fdopendir(fd->release());
    if (d == nullptr) return;
    std::vector<std::pair<std::string, bool>> entries;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      bool is_dir = e->d_type == DT_DIR;
      if (e->d_type == DT_UNKNOWN) {
        struct stat st {};
        is_dir = ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
      }
      entries.emplace_back(e->d_name, is_dir);
    }
    ::closedir(d);
    for (const auto& [name, is_dir] : entries) {
      const std::string child = join(abs, name);
      if (report) record("created", child);
      if (is_dir && options.recursive && add_dir(child)) add_tree(child, report, depth + 1);
    }
  }

  void push(WatchEvent e) {
    if (batch.empty()) first_pending = Clock::now();
    at[e.path] = batch.size();
    batch.push_back(std::move(e));
  }

  /// Coalescing by path within a batch.
  void record(const std::string& type, const std::string& path) {
    if (auto it = at.find(path); it != at.end()) {
      WatchEvent& prev = batch[it->second];
      if (prev.type == "created" && type == "modified") return;
      if (prev.type == "modified" && type == "modified") return;
      if (prev.type == "created" && type == "deleted") {
        prev.type.clear();  // came and went within the burst: nothing to report
        at.erase(it);
        return;
      }
      if (prev.type == "created" || prev.type == "modified" || prev.type == "deleted") {
        const std::string merged = prev.type == "deleted" && type == "created" ? "modified" : type;
        prev.type.clear();
        at.erase(it);
        WatchEvent e;
        e.type = merged;
        e.path = path;
        push(std::move(e));
        return;
      }
    }
    WatchEvent e;
    e.type = type;
    e.path = path;
    push(std::move(e));
  }

  void rename_dirs(const std::string& from, const std::string& to) {
    for (auto& [wd, p] : dirs) {
      if (p == from) p = to;
      else if (p.size() > from.size() && p.compare(0, from.size(), from) == 0 && p[from.size()] == '/') p = to + p.substr(from.size());
    }
  }

  void forget_dirs(const std::string& under) {
    for (auto it = dirs.begin(); it != dirs.end();) {
      const std::string& p = it->second;
      if (p == under || (p.size() > under.size() && p.compare(0, under.size(), under) == 0 && p[under.size()] == '/')) {
        ::inotify_rm_watch(inotify.get(), it->first);
        it = dirs.erase(it);
        --dir_count;
      } else {
        ++it;
      }
    }
  }

  /// Handles one inotify event; returns the end reason when the watch is over.
  std::string handle(const inotify_event& ev) {
    if ((ev.mask & IN_Q_OVERFLOW) != 0) {
      WatchEvent e;
      e.type = "overflow";
      e.path = root;
      push(std::move(e));
      return {};
    }
    auto it = dirs.find(ev.wd);
    if (it == dirs.end()) return {};
    if (ev.wd == root_wd && (ev.mask & IN_DELETE_SELF) != 0) return "deleted";
    if (ev.wd == root_wd && (ev.mask & IN_MOVE_SELF) != 0) return "moved";
    if ((ev.mask & IN_IGNORED) != 0) {
      if (ev.wd == root_wd) return "deleted";
      dirs.erase(it);
      --dir_count;
      return {};
    }
    if (ev.len == 0 || ev.name[0] == 0) return {};
    const std::string path = join(it->second, ev.name);
    const bool is_dir = (ev.mask & IN_ISDIR) != 0;
    if ((ev.mask & IN_CREATE) != 0) {
      record("created", path);
      if (is_dir && options.recursive && add_dir(path)) add_tree(path, true, 0);
    } else if ((ev.mask & (IN_MODIFY | IN_CLOSE_WRITE)) != 0) {
      record("modified", path);
    } else if ((ev.mask & IN_DELETE) != 0) {
      record("deleted", path);
    } else if ((ev.mask & IN_MOVED_FROM) != 0) {
      moves[ev.cookie] = {path, is_dir};
      at.erase(path);
      WatchEvent e;
      e.type = "moved_from";
      e.path = path;
      push(std::move(e));
    } else if ((ev.mask & IN_MOVED_TO) != 0) {
      WatchEvent e;
      e.type = "moved_to";
      e.path = path;
      if (auto m = moves.find(ev.cookie); m != moves.end()) {
        e.from = m->second.first;
        // One event for a move inside the watch: drop its moved_from half.
        for (auto& b : batch) {
          if (b.type == "moved_from" && b.path == e.from) b.type.clear();
        }
        if (is_dir) rename_dirs(e.from, path);
        moves.erase(m);
      } else if (is_dir && options.recursive && add_dir(path)) {
        add_tree(path, true, 0);
      }
      at.erase(path);
      push(std::move(e));
    }
    return {};
  }

  void flush() {
    // A directory moved out of the watch: stop watching what is now elsewhere.
    for (const auto& [cookie, m] : moves) {
      if (m.second) forget_dirs(m.first);
    }
    moves.clear();
    std::vector<WatchEvent> out;
    out.reserve(batch.size());
    for (auto& e : batch) {
      if (e.type.empty()) continue;
      if (e.type != "deleted" && e.type != "moved_from" && e.type != "overflow") {
        auto p = resolver.resolve(e.path);
        struct stat st {};
        if (p && !p->leaf.empty() && ::fstatat(p->parent.get(), p->leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
          e.kind = kind_of(st.st_mode);
          if (S_ISREG(st.st_mode)) e.size = st.st_size;
        }
      }
      out.push_back(std::move(e));
    }
    batch.clear();
    at.clear();
    if (!out.empty()) on_events(std::move(out));
  }

  void run() {
    alignas(inotify_event) char buf[64 * 1024];
    std::string end_reason;
    while (end_reason.empty()) {
      int timeout = -1;
      if (!batch.empty()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(first_pending + options.coalesce - Clock::now());
        timeout = static_cast<int>(std::max<int64_t>(0, left.count()));
      }
      pollfd fds[2] = {{inotify.get(), POLLIN, 0}, {stop.get(), POLLIN, 0}};
      const int n = ::poll(fds, 2, timeout);
      if (n < 0 && errno != EINTR) {
        end_reason = "error";
        break;
      }
      if ((fds[1].revents & POLLIN) != 0) return;  // destroyed: no more callbacks
      if ((fds[0].revents & POLLIN) != 0) {
        const ssize_t got = ::read(inotify.get(), buf, sizeof buf);
        for (ssize_t off = 0; got > 0 && off < got && end_reason.empty();) {
          const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
          end_reason = handle(*ev);
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
      }
      if (!batch.empty() && (end_reason.size() || batch.size() >= kMaxBatch || Clock::now() >= first_pending + options.coalesce)) {
        flush();
      }
    }
    if (!batch.empty()) flush();
    on_end(end_reason);
  }
};

core::Result<std::unique_ptr<FileWatch>> FileWatch::start(const PathResolver& resolver, const std::string& path,
                                                          Options options, EventsFn on_events, EndFn on_end) {
  auto p = resolver.resolve(path);
  if (!p) return p.error();
  auto probe = resolver.open_at(*p, O_PATH);
  if (!probe) return probe.error();
  struct stat st {};
  if (::fstat(probe->get(), &st) != 0) return errno_error(errno, "cannot stat", p->abs);
  if (!S_ISDIR(st.st_mode)) return core::make_error(core::Errc::invalid_argument, "not a directory: " + p->abs);

  auto state = std::make_unique<State>(resolver);
  state->root = p->abs;
  state->options = options;
  state->on_events = std::move(on_events);
  state->on_end = std::move(on_end);
  state->inotify = core::UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!state->inotify.valid()) {
    return core::make_error(core::Errc::unavailable, std::string("cannot start a file watch: inotify: ") + std::strerror(errno));
  }
  state->stop = core::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!state->stop.valid()) return core::make_error(core::Errc::internal, std::string("eventfd: ") + std::strerror(errno));
  const std::string proc = "/proc/self/fd/" + std::to_string(probe->get());
  state->root_wd = ::inotify_add_watch(state->inotify.get(), proc.c_str(), kMask);
  if (state->root_wd < 0) {
    return core::make_error(core::Errc::unavailable, "cannot watch " + p->abs + ": " + std::strerror(errno) +
                                                         (errno == ENOSPC ? " (inotify watches exhausted)" : ""));
  }
  state->dirs.emplace(state->root_wd, p->abs);
  state->dir_count = 1;
  if (options.recursive) state->add_tree(p->abs, false, 0);
  std::unique_ptr<FileWatch> w(new FileWatch(std::move(state)));
  State* s = w->state_.get();
  w->thread_ = std::thread([s] {
    try {
      s->run();
    } catch (const std::exception& e) {
      spdlog::error("file watch on {} failed: {}", s->root, e.what());
      s->on_end("error");
    }
  });
  return w;
}

FileWatch::FileWatch(std::unique_ptr<State> state) : state_(std::move(state)) {}

FileWatch::~FileWatch() {
  const uint64_t one = 1;
  if (state_ && state_->stop.valid()) (void)!::write(state_->stop.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

const std::string& FileWatch::path() const { return state_->root; }

size_t FileWatch::watched_dirs() const { return state_->dir_count.load(); }

}  // namespace execd::files
