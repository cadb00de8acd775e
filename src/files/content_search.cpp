#include "files/content_search.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include "files/file_grep.hpp"
#include "files/glob_pattern.hpp"
#include "files/grep_control.hpp"
#include "files/grep_matcher.hpp"
#include "files/grep_walker.hpp"

namespace execd::files {
namespace {

// What a match costs held in memory, roughly: enough to bound the total.
size_t held_size(const GrepMatch& m) {
  size_t n = sizeof(GrepMatch) + m.path.size() + m.text.size();
  for (const auto& l : m.before) n += sizeof(std::string) + l.size();
  for (const auto& l : m.after) n += sizeof(std::string) + l.size();
  return n;
}

/// Turns matches into a summary and calls on_match, in order, on the calling thread.
class Delivery {
 public:
  Delivery(const GrepQuery& q, GrepControl& control, const std::function<bool(const GrepMatch&)>& on_match)
      : q_(q), control_(control), on_match_(on_match) {}

  GrepSummary summary;
  bool stopped = false;  // no more matches are wanted

  bool emit(const GrepMatch& m) {
    ++summary.matches;
    if (!on_match_(m)) {
      summary.cancelled = true;
      return stop(GrepControl::Reason::cancelled);
    }
    if (summary.matches >= q_.max_results) {
      cut("max_results");
      return stop(GrepControl::Reason::finished);
    }
    return true;
  }

  /// Accounts for one searched file; false when the search ends with it.
  bool file_done(const FileGrepOutcome& out, bool stopped_early) {
    ++summary.files_searched;
    summary.bytes_searched += out.bytes;
    if (out.binary) ++summary.files_binary;
    if (stopped) return false;
    if (out.out_of_budget) {
      cut("max_total_bytes");
      return stop(GrepControl::Reason::finished);
    }
    if (stopped_early) return stop(GrepControl::Reason::cancelled);  // the control halted: its reason stands
    return true;
  }

  void cut(const char* by) {
    if (!summary.truncated) summary.truncated_by = by;
    summary.truncated = true;
  }

  /// The summary once the search is over.
  core::Result<GrepSummary> finish() {
    switch (control_.reason()) {
      case GrepControl::Reason::timeout: cut("timeout"); break;
      case GrepControl::Reason::cancelled: summary.cancelled = true; break;
      case GrepControl::Reason::failed: return core::make_error(core::Errc::internal, "content search failed: out of memory");
      default: break;
    }
    return summary;
  }

 private:
  bool stop(GrepControl::Reason why) {
    control_.halt(why);
    stopped = true;
    return false;
  }

  const GrepQuery& q_;
  GrepControl& control_;
  const std::function<bool(const GrepMatch&)>& on_match_;
};

/// Searches the files the walk submits on worker threads, kFilesInFlight at most ahead of
/// the one the calling thread delivers; see ContentSearch.
class FilePipeline {
 public:
  FilePipeline(const GrepQuery& q, const GrepMatcher& m, GrepControl& control, ByteBudget& budget, Delivery& delivery)
      : q_(q), m_(m), control_(control), budget_(budget), delivery_(delivery), inline_(q, m, control, budget) {}

  FilePipeline(const FilePipeline&) = delete;
  FilePipeline& operator=(const FilePipeline&) = delete;

  ~FilePipeline() {
    if (!workers_.empty()) {
      control_.halt(GrepControl::Reason::finished);  // keeps the reason of an earlier halt
      {
        std::lock_guard lk(mu_);
        closing_ = true;
      }
      work_cv_.notify_all();
      for (auto& t : workers_) t.join();
    }
    for (auto& j : ring_) {
      if (j.fd >= 0) ::close(j.fd);
    }
  }

  /// Starts up to `n` workers; fewer if threads cannot be made (0: all on this thread).
  void start(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      try {
        workers_.emplace_back([this] { work(); });
      } catch (const std::system_error&) {
        break;
      }
    }
  }

  /// The walk's OnFile: takes `fd`; false ends the walk.
  bool submit(int fd, std::string abs) {
    if (delivery_.stopped || !control_.keep_going()) {
      ::close(fd);
      return false;
    }
    if (workers_.empty()) {
      FileGrepOutcome out = inline_.search(fd, abs, [this](GrepMatch&& m) { return delivery_.emit(m); });
      ::close(fd);
      return delivery_.file_done(out, out.stopped);
    }
    {
      std::unique_lock lk(mu_);
      while (tail_ - head_ == ring_.size()) {
        if (!deliver_head(lk)) {
          lk.unlock();
          ::close(fd);
          return false;
        }
      }
      Job& j = ring_[tail_ % ring_.size()];
      j = Job{};
      j.fd = fd;
      j.abs = std::move(abs);
      ++tail_;
    }
    work_cv_.notify_one();
    return drain(false);
  }

  /// Delivers every file in flight, in order (after the walk).
  void finish() { drain(true); }

 private:
  struct Job {
    int fd = -1;
    std::string abs;
    std::vector<GrepMatch> matches;
    size_t held = 0;
    FileGrepOutcome out;
    bool capped = false;      // holds max_results matches: the rest cannot be delivered
    bool overflowed = false;  // held too much: searched again when delivered
    bool done = false;
  };

  // Delivers the done jobs at the head; with `all`, waits for each in flight. false: stop.
  bool drain(bool all) {
    std::unique_lock lk(mu_);
    while (head_ < tail_) {
      if (!all && !ring_[head_ % ring_.size()].done) return true;
      if (!deliver_head(lk)) return false;
    }
    return true;
  }

  // Waits for the head job (workers finish every job they take, each read bounded and the
  // control checked between reads), delivers it without the lock, frees its slot.
  bool deliver_head(std::unique_lock<std::mutex>& lk) {
    Job& j = ring_[head_ % ring_.size()];
    while (!j.done) {
      if (done_cv_.wait_for(lk, std::chrono::milliseconds(100)) == std::cv_status::timeout) control_.keep_going();
    }
    lk.unlock();
    const bool go = deliver(j);
    lk.lock();
    ++head_;
    return go;
  }

  bool deliver(Job& j) {
    if (delivery_.stopped) return false;
    if (j.out.cut_per_file) delivery_.cut("max_bytes_per_file");
    if (j.overflowed) {
      release(j);
      budget_.give_back(j.out.bytes);
      j.out = FileGrepOutcome{};
      if (::lseek(j.fd, 0, SEEK_SET) == 0) {
        j.out = inline_.search(j.fd, j.abs, [this](GrepMatch&& m) { return delivery_.emit(m); });
      }
      ::close(j.fd);
      j.fd = -1;
      if (j.out.cut_per_file) delivery_.cut("max_bytes_per_file");
      return delivery_.file_done(j.out, j.out.stopped);
    }
    for (const auto& m : j.matches) {
      if (!delivery_.emit(m)) break;
    }
    release(j);
    return delivery_.file_done(j.out, j.out.stopped && !j.capped);
  }

  void release(Job& j) {
    held_.fetch_sub(j.held, std::memory_order_relaxed);
    j.held = 0;
    std::vector<GrepMatch>().swap(j.matches);
  }

  void work() {
    FileGrep grep(q_, m_, control_, budget_);
    for (;;) {
      Job* j = nullptr;
      {
        std::unique_lock lk(mu_);
        work_cv_.wait(lk, [this] { return closing_ || claim_ < tail_; });
        if (claim_ == tail_) return;
        j = &ring_[claim_++ % ring_.size()];
      }
      try {
        search(grep, *j);
      } catch (...) {  // out of memory: the search ends with an error
        control_.halt(GrepControl::Reason::failed);
        j->out.stopped = true;
      }
      {
        std::lock_guard lk(mu_);
        j->done = true;
      }
      done_cv_.notify_one();
    }
  }

  void search(FileGrep& grep, Job& j) {
    j.out = grep.search(j.fd, j.abs, [this, &j](GrepMatch&& m) {
      const size_t n = held_size(m);
      if (j.held + n > kJobBytes || held_.fetch_add(n, std::memory_order_relaxed) + n > ContentSearch::kHeldBytes) {
        if (j.held + n <= kJobBytes) held_.fetch_sub(n, std::memory_order_relaxed);
        j.overflowed = true;
        return false;
      }
      j.held += n;
      j.matches.push_back(std::move(m));
      if (j.matches.size() >= q_.max_results) {
        j.capped = true;
        return false;
      }
      return true;
    });
    if (!j.overflowed) {
      ::close(j.fd);
      j.fd = -1;
    }
  }

  // One file may hold this much; more goes to the calling thread.
  static constexpr size_t kJobBytes = ContentSearch::kHeldBytes / 8;

  const GrepQuery& q_;
  const GrepMatcher& m_;
  GrepControl& control_;
  ByteBudget& budget_;
  Delivery& delivery_;
  FileGrep inline_;  // the calling thread's
  std::array<Job, ContentSearch::kFilesInFlight> ring_;
  std::atomic<size_t> held_{0};
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  size_t head_ = 0;   // the next job to deliver
  size_t claim_ = 0;  // the next job for a worker
  size_t tail_ = 0;   // the next free slot
  bool closing_ = false;
  std::vector<std::thread> workers_;  // last: joined before the rest is destroyed
};

/// The query's glob compiled once for the whole walk; invalid_argument naming it.
core::Result<std::optional<GlobPattern>> compile_glob(const GrepQuery& query) {
  if (query.glob.empty()) return std::optional<GlobPattern>();
  auto g = GlobPattern::compile(query.glob);
  if (!g) return core::make_error(core::Errc::invalid_argument, "'glob': " + g.error().message);
  return std::optional<GlobPattern>(std::move(g).value());
}

core::Result<void> check_bounds(const GrepQuery& query) {
  if (query.context < 0 || query.context > GrepQuery::kMaxContext) {
    return core::make_error(core::Errc::invalid_argument, "'context' must be between 0 and " + std::to_string(GrepQuery::kMaxContext));
  }
  if (query.max_results == 0 || query.max_results > GrepQuery::kMaxResults) {
    return core::make_error(core::Errc::invalid_argument, "'max_results' must be between 1 and " + std::to_string(GrepQuery::kMaxResults));
  }
  if (query.max_bytes_per_file == 0) return core::make_error(core::Errc::invalid_argument, "'max_bytes_per_file' must be positive");
  return {};
}

}  // namespace

unsigned ContentSearch::default_workers() {
  return std::clamp(std::thread::hardware_concurrency(), 2u, 4u);
}

core::Result<void> ContentSearch::check(const GrepQuery& query) const {
  if (auto r = check_bounds(query); !r) return r;
  if (auto g = compile_glob(query); !g) return g.error();
  GrepMatcher matcher;
  if (auto r = matcher.compile(query); !r) return r;
  auto p = resolver_.resolve(query.path);
  if (!p) return p.error();
  auto fd = resolver_.open_at(*p, O_PATH);
  if (!fd) return fd.error();
  return {};
}

core::Result<GrepSummary> ContentSearch::run(const GrepQuery& query, const std::function<bool(const GrepMatch&)>& on_match,
                                             const std::atomic<bool>* stop) const {
  if (auto r = check_bounds(query); !r) return r.error();
  auto glob = compile_glob(query);
  if (!glob) return glob.error();
  GrepMatcher matcher;
  if (auto r = matcher.compile(query); !r) return r.error();
  auto p = resolver_.resolve(query.path);
  if (!p) return p.error();
  auto fd = resolver_.open_at(*p, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (!fd) return fd.error();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return errno_error(errno, "cannot stat", p->abs);
  GrepControl control(stop, GrepControl::Clock::now() + query.timeout);
  ByteBudget budget(query.max_total_bytes);
  Delivery delivery(query, control, on_match);
  if (S_ISREG(st.st_mode)) {
    FileGrep grep(query, matcher, control, budget);
    const auto out = grep.search(fd->get(), p->abs, [&](GrepMatch&& m) { return delivery.emit(m); });
    if (out.cut_per_file) delivery.cut("max_bytes_per_file");
    delivery.file_done(out, out.stopped);
  } else if (S_ISDIR(st.st_mode)) {
    FilePipeline pipeline(query, matcher, control, budget, delivery);
    pipeline.start(workers_);
    GrepWalker walker(query, glob->has_value() ? &**glob : nullptr, p->abs, resolver_.root(),
                      [&](int f, std::string abs) { return pipeline.submit(f, std::move(abs)); });
    if (walker.walk(fd->release(), st.st_dev)) pipeline.finish();
  } else {
    return core::make_error(core::Errc::invalid_argument, "not a file or directory: " + p->abs);
  }
  return delivery.finish();
}

}  // namespace execd::files
