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
/// the one the calling thread delivers; see ContentSearch. Workers open the files (relative
/// to their directory) as well as read and search them, so the walk stays ahead. Threads
/// wake each other in batches: a worker sleeps only when no file waits, and is woken when
/// kWakeBatch wait; the calling thread sleeps only for a full ring (or the end of the walk)
/// and is woken when the next kDoneBatch files are done. A wake-up per file would cost more
/// than searching most files, and far more on a loaded machine, where each wake-up waits
/// for a core.
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

  /// The walk's OnFile; false ends the walk.
  bool submit(const std::shared_ptr<const GrepWalker::OpenDir>& dir, const std::string& name, std::string abs) {
    if (delivery_.stopped || !control_.keep_going()) return false;
    if (workers_.empty()) {
      const int fd = GrepWalker::open_file(*dir, name);
      if (fd < 0) return true;
      FileGrepOutcome out = inline_.search(fd, abs, [this](GrepMatch&& m) { return delivery_.emit(m); });
      ::close(fd);
      return delivery_.file_done(out, out.stopped);
    }
    if (tail_ - head_ == ring_.size() && !deliver_head()) return false;
    ring_[tail_ % ring_.size()].reset(dir, name, std::move(abs));
    bool wake = false;
    {
      std::lock_guard lk(mu_);
      ++tail_;
      wake = idle_ > 0 && tail_ - claim_ >= kWakeBatch;
    }
    if (wake) work_cv_.notify_all();
    // Deliver what is done already, without waiting.
    while (head_ < tail_ && ring_[head_ % ring_.size()].done.load(std::memory_order_acquire)) {
      if (!deliver_head()) return false;
    }
    return true;
  }

  /// Delivers the files in flight, in order, until one ends the search (after the walk).
  void finish() {
    while (head_ < tail_) {
      if (!deliver_head()) return;
    }
  }

 private:
  struct Job {
    std::shared_ptr<const GrepWalker::OpenDir> dir;  // until the worker opened the file
    std::string name;
    std::string abs;
    int fd = -1;
    std::vector<GrepMatch> matches;
    size_t held = 0;
    FileGrepOutcome out;
    bool unopened = false;    // vanished or unreadable: not searched
    bool capped = false;      // holds max_results matches: the rest cannot be delivered
    bool overflowed = false;  // held too much: searched again when delivered
    std::atomic<bool> done{false};

    void reset(const std::shared_ptr<const GrepWalker::OpenDir>& d, const std::string& n, std::string a) {
      dir = d;
      name = n;
      abs = std::move(a);
      fd = -1;
      held = 0;
      out = {};
      unopened = capped = overflowed = false;
      done.store(false, std::memory_order_relaxed);
    }
  };

  static constexpr size_t kWakeBatch = ContentSearch::kFilesInFlight / 8;
  static constexpr size_t kDoneBatch = ContentSearch::kFilesInFlight / 2;
  // One file may hold this much; more goes to the calling thread.
  static constexpr size_t kJobBytes = ContentSearch::kHeldBytes / 8;

  // Whether the calling thread, waiting for the head, should wake: the next kDoneBatch
  // files (or all in flight, if fewer) are done.
  bool batch_done() const {
    const size_t h = head_.load();
    const size_t n = std::min(kDoneBatch, tail_.load() - h);
    for (size_t i = h; i < h + n; ++i) {
      if (!ring_[i % ring_.size()].done.load()) return false;
    }
    return true;
  }

  // Waits for the head job (workers finish every job they take, each read bounded and the
  // control checked between reads) and delivers it. false: stop.
  bool deliver_head() {
    Job& j = ring_[head_ % ring_.size()];
    if (!j.done.load(std::memory_order_acquire)) {
      std::unique_lock lk(mu_);
      if (claim_ < tail_ && idle_ > 0) work_cv_.notify_all();
      waiting_.store(true);
      while (!batch_done()) {
        if (done_cv_.wait_for(lk, std::chrono::milliseconds(100)) == std::cv_status::timeout) control_.keep_going();
      }
      waiting_.store(false);
    }
    const bool go = deliver(j);
    head_.store(head_ + 1);
    return go;
  }

  bool deliver(Job& j) {
    if (delivery_.stopped) return false;
    if (j.unopened) return true;
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
        while (!closing_ && claim_ == tail_) {
          ++idle_;
          work_cv_.wait_for(lk, std::chrono::seconds(1));
          --idle_;
        }
        if (claim_ == tail_) return;
        j = &ring_[claim_++ % ring_.size()];
      }
      try {
        search(grep, *j);
      } catch (...) {  // out of memory: the search ends with an error
        control_.halt(GrepControl::Reason::failed);
        j->out.stopped = true;
      }
      j->done.store(true);
      if (waiting_.load() && batch_done()) {
        std::lock_guard lk(mu_);
        done_cv_.notify_one();
      }
    }
  }

  void search(FileGrep& grep, Job& j) {
    j.fd = GrepWalker::open_file(*j.dir, j.name);
    j.dir.reset();
    if (j.fd < 0) {
      j.unopened = true;
      return;
    }
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
  // head_ and tail_ are written by the calling thread only (tail_ under mu_); workers read
  // them to decide whether to wake it.
  std::atomic<size_t> head_{0};  // the next job to deliver
  std::atomic<size_t> tail_{0};  // the next free slot
  size_t claim_ = 0;             // the next job for a worker (mu_)
  unsigned idle_ = 0;            // workers waiting for a job (mu_)
  bool closing_ = false;         // (mu_)
  std::atomic<bool> waiting_{false};  // the calling thread waits for the head
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
  static const unsigned n = std::clamp(std::thread::hardware_concurrency(), 2u, 4u);
  return n;
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
                      [&](const std::shared_ptr<const GrepWalker::OpenDir>& dir, const std::string& name, std::string abs) {
                        return pipeline.submit(dir, name, std::move(abs));
                      });
    walker.walk(fd->release(), st.st_dev);
    pipeline.finish();  // after a timeout too: the files searched in time are delivered
  } else {
    return core::make_error(core::Errc::invalid_argument, "not a file or directory: " + p->abs);
  }
  return delivery.finish();
}

}  // namespace execd::files
