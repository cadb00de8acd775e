#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "core/result.hpp"

namespace execd::files {

/// Bytes used under a directory (the files root or the workspace) against a limit
/// (--disk-quota). Usage is counted once by a walk (rescan(), at start) and then kept up
/// to date by the writers themselves: each write takes a Charge for the bytes it adds (its
/// new size minus the size it replaces) before it commits, so no write walks the tree.
/// A charge that would pass the limit is refused with `no_space` (507) naming the quota
/// and the usage, before anything is written. Thread-safe.
///
/// Writes by commands (not through the files API) are not seen until the next rescan();
/// the count is of apparent file sizes, each inode once.
class DiskQuota {
 public:
  /// `limit` 0: unlimited (charges always succeed, usage is still tracked).
  DiskQuota(std::string root, uint64_t limit);

  /// Bytes taken by one pending write: refunded when destroyed unless keep() was called
  /// (the write committed). Move-only.
  class Charge {
   public:
    Charge(Charge&& o) noexcept : quota_(o.quota_), delta_(o.delta_), kept_(o.kept_) { o.quota_ = nullptr; }
    Charge& operator=(Charge&&) = delete;
    Charge(const Charge&) = delete;
    ~Charge();
    void keep() { kept_ = true; }

   private:
    friend class DiskQuota;
    Charge(DiskQuota* q, int64_t delta) : quota_(q), delta_(delta) {}
    DiskQuota* quota_;
    int64_t delta_;
    bool kept_ = false;
  };

  /// Reserves `delta` bytes (negative: frees) for writing `what`. Refused with no_space
  /// when it would take usage past the limit; freeing always succeeds.
  core::Result<Charge> charge(int64_t delta, const std::string& what);
  /// Grows a pending charge by `delta` bytes (a writer reserving ahead of what it
  /// writes); refused like charge() when that would pass the limit.
  core::Result<void> extend(Charge& c, int64_t delta, const std::string& what);
  /// Sets a pending charge to what its write finally changed (at commit: bytes written
  /// minus the bytes of the file it replaced). Only ever lowers a reservation, so it
  /// cannot be refused.
  void settle(Charge& c, int64_t delta);
  /// no_space when `bytes` more would pass the limit now; reserves nothing (an early
  /// refusal before a multi-file write starts).
  core::Result<void> check_room(uint64_t bytes, const std::string& what) const;
  /// Records a change already made (a removal: negative).
  void adjust(int64_t delta);
  /// Walks the root (no symlinks followed, each inode once) and resets usage to what it
  /// finds plus the charges now pending.
  void rescan();

  [[nodiscard]] uint64_t used() const;
  [[nodiscard]] uint64_t limit() const { return limit_; }
  [[nodiscard]] const std::string& root() const { return root_; }

  /// "1.5 MiB" style, for messages.
  static std::string human(uint64_t bytes);

 private:
  std::string root_;
  uint64_t limit_;
  mutable std::mutex mu_;
  core::Error refusal(int64_t delta, const std::string& what) const;  // caller holds mu_
  int64_t used_ = 0;     // committed + pending charges
  int64_t pending_ = 0;  // charges not yet kept or refunded
};

}  // namespace execd::files
