#include "files/atomic_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/fd_io.hpp"
#include "core/id.hpp"

namespace execd::files {

core::Result<AtomicWriter> AtomicWriter::open(const PathResolver& resolver, const std::string& user_path,
                                              uint64_t max_bytes, core::BackgroundCloser* closer, DiskQuota* quota) {
  auto target = resolver.resolve_creating_parents(user_path);
  if (!target) return target.error();
  if (target->leaf.empty()) return core::make_error(core::Errc::invalid_argument, "cannot write to a directory: " + target->abs);
  struct stat st {};
  if (::fstatat(target->parent.get(), target->leaf.c_str(), &st, 0) == 0 && S_ISDIR(st.st_mode)) {
    return core::make_error(core::Errc::invalid_argument, "is a directory, not a file: " + target->abs);
  }
  AtomicWriter w;
  w.temp_name_ = "." + target->leaf.substr(0, 200) + ".execd-" + core::random_hex(6);
  const int fd = ::openat(target->parent.get(), w.temp_name_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) return errno_error(errno, "cannot create a temp file for", target->abs);
  w.fd_.reset(fd);
  w.target_ = std::move(*target);
  w.max_bytes_ = max_bytes;
  w.closer_ = closer;
  if (quota != nullptr) {
    auto charge = quota->charge(0, w.target_.abs);
    if (!charge) return charge.error();  // cannot happen for 0 bytes; checked anyway
    w.charge_.emplace(std::move(charge).value());
    w.quota_ = quota;
    // Replacing a file: its bytes are counted already and go at the rename, so a
    // rewrite that ends no larger than the file needs no room (commit settles the real
    // difference). Only a file's last name frees anything.
    struct stat entry {};
    if (::fstatat(w.target_.parent.get(), w.target_.leaf.c_str(), &entry, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(entry.st_mode) &&
        entry.st_nlink == 1) {
      w.reserved_ = static_cast<uint64_t>(entry.st_size);
    }
  }
  w.done_ = false;
  return w;
}

AtomicWriter::AtomicWriter(AtomicWriter&& o) noexcept { *this = std::move(o); }

AtomicWriter& AtomicWriter::operator=(AtomicWriter&& o) noexcept {
  if (this != &o) {
    abort();
    target_ = std::move(o.target_);
    temp_name_ = std::move(o.temp_name_);
    fd_ = std::move(o.fd_);
    written_ = o.written_;
    writeback_started_ = o.writeback_started_;
    closer_ = o.closer_;
    buffer_ = std::move(o.buffer_);
    max_bytes_ = o.max_bytes_;
    quota_ = o.quota_;
    charge_.reset();
    if (o.charge_) charge_.emplace(std::move(*o.charge_));  // the moved-from charge refunds nothing
    o.charge_.reset();
    reserved_ = o.reserved_;
    done_ = o.done_;
    o.done_ = true;
  }
  return *this;
}

AtomicWriter::~AtomicWriter() { abort(); }

void AtomicWriter::abort() {
  if (done_) return;
  done_ = true;
  fd_.reset();
  ::unlinkat(target_.parent.get(), temp_name_.c_str(), 0);
  charge_.reset();  // not kept: the reservation goes back
}

core::Result<void> AtomicWriter::reserve(uint64_t total) {
  if (quota_ == nullptr || total <= reserved_) return {};
  const uint64_t need = total - reserved_;
  // Ahead by a step, so a large upload takes the quota's lock once a MiB; near the
  // limit only what is really needed, so a write that fits is never refused.
  if (need < kReserveStep && quota_->extend(*charge_, static_cast<int64_t>(kReserveStep), target_.abs)) {
    reserved_ += kReserveStep;
    return {};
  }
  if (auto r = quota_->extend(*charge_, static_cast<int64_t>(need), target_.abs); !r) return r;
  reserved_ += need;
  return {};
}

core::Result<void> AtomicWriter::write(std::string_view bytes) {
  if (done_) return core::make_error(core::Errc::internal, "write after commit or abort");
  if (max_bytes_ > 0 && written_ + bytes.size() > max_bytes_) {
    return core::make_error(core::Errc::too_large, "file " + target_.abs + " exceeds the upload limit of " +
                                                       std::to_string(max_bytes_) + " bytes (--max-upload-bytes)");
  }
  // Request bodies arrive in small pieces (a few KiB); batching them into large writes
  // halves the cost of an upload.
  if (auto r = reserve(written_ + bytes.size()); !r) return r;
  written_ += bytes.size();
  if (buffer_.capacity() < kBuffer) buffer_.reserve(kBuffer);  // grown once, not by doubling
  if (buffer_.size() + bytes.size() < kBuffer) {
    buffer_.append(bytes);
    return {};
  }
  if (auto f = flush(); !f) return f;
  if (bytes.size() >= kBuffer) {
    if (auto w = write_fd(bytes); !w) return w;
  } else {
    buffer_.append(bytes);
  }
  start_writeback();
  return {};
}

void AtomicWriter::start_writeback() {
  const uint64_t in_file = written_ - buffer_.size();
  if (in_file - writeback_started_ < kWritebackEvery) return;
  // Only a start (SYNC_FILE_RANGE_WRITE does not wait): the disk works while more of
  // the body arrives. Advisory; fsync in commit() is what reports errors.
  ::sync_file_range(fd_.get(), static_cast<off_t>(writeback_started_), static_cast<off_t>(in_file - writeback_started_),
                    SYNC_FILE_RANGE_WRITE);
  writeback_started_ = in_file;
}

core::Result<void> AtomicWriter::flush() {
  if (buffer_.empty()) return {};
  auto r = write_fd(buffer_);
  buffer_.clear();
  return r;
}

core::Result<void> AtomicWriter::write_fd(std::string_view bytes) {
  if (!core::write_all(fd_.get(), bytes)) return errno_error(errno, "cannot write", target_.abs);
  return {};
}

core::Result<void> AtomicWriter::copy_from(int fd) {
  std::string buf(1 << 20, '\0');
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(errno, "cannot read the spooled upload for", target_.abs);
    if (n == 0) return {};
    if (auto w = write(std::string_view(buf.data(), static_cast<size_t>(n))); !w) return w;
  }
}

core::Result<void> AtomicWriter::commit(const FileAttributes& attrs) {
  if (done_) return core::make_error(core::Errc::internal, "commit after commit or abort");
  // An existing target keeps its mode and owner unless told otherwise.
  struct stat old {};
  const bool existed = ::fstatat(target_.parent.get(), target_.leaf.c_str(), &old, 0) == 0;
  std::optional<mode_t> mode = attrs.mode;
  if (!mode && existed) mode = old.st_mode & 07777;
  if (auto f = flush(); !f) {
    abort();
    return f;
  }
  if (::fsync(fd_.get()) != 0) {
    const int err = errno;
    abort();
    return errno_error(err, "cannot write", target_.abs);
  }
  if (mode && ::fchmod(fd_.get(), *mode) != 0) {
    const int err = errno;
    abort();
    return errno_error(err, "cannot set the mode of", target_.abs);
  }
  if (attrs.uid || attrs.gid) {
    if (::fchown(fd_.get(), attrs.uid ? *attrs.uid : static_cast<uid_t>(-1), attrs.gid ? *attrs.gid : static_cast<gid_t>(-1)) != 0) {
      const int err = errno;
      abort();
      return errno_error(err, "cannot set the owner of", target_.abs);
    }
  }
  // Held across the rename, the replaced file is freed when this is closed, not inside
  // renameat (freeing 1 MiB of blocks costs ~0.4 ms).
  core::UniqueFd replaced(existed ? ::openat(target_.parent.get(), target_.leaf.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1);
  // What the rename frees: the replaced entry's bytes, if it was the file's only name.
  struct stat entry {};
  const bool frees = ::fstatat(target_.parent.get(), target_.leaf.c_str(), &entry, AT_SYMLINK_NOFOLLOW) == 0 &&
                     S_ISREG(entry.st_mode) && entry.st_nlink == 1;
  if (::renameat(target_.parent.get(), temp_name_.c_str(), target_.parent.get(), target_.leaf.c_str()) != 0) {
    const int err = errno;
    abort();
    return errno_error(err, "cannot move the upload into place at", target_.abs);
  }
  done_ = true;
  fd_.reset();
  if (charge_) {
    quota_->settle(*charge_, static_cast<int64_t>(written_) - (frees ? static_cast<int64_t>(entry.st_size) : 0));
    charge_->keep();
    charge_.reset();
  }
  if (closer_ != nullptr) closer_->close(std::move(replaced));
  return {};
}

}  // namespace execd::files
