#include "files/archive_stream.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

#include <archive.h>
#include <archive_entry.h>

#include "core/unique_fd.hpp"

namespace execd::files {
namespace {

constexpr int kMaxDepth = 256;
constexpr size_t kBlock = 64 * 1024;

struct SinkContext {
  const std::function<bool(const char*, size_t)>* sink;
  bool gone = false;
};

la_ssize_t write_cb(struct archive*, void* ctx, const void* buf, size_t len) {
  auto* c = static_cast<SinkContext*>(ctx);
  if (!(*c->sink)(static_cast<const char*>(buf), len)) {
    c->gone = true;
    return -1;
  }
  return static_cast<la_ssize_t>(len);
}

struct ArchiveDeleter {
  void operator()(struct archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

class Writer {
 public:
  Writer(struct archive* a, const std::atomic<bool>* stop) : a_(a), stop_(stop), buf_(kBlock) {}
  ArchiveStream::Stats stats;
  std::string error;

  bool dir(int fd, const std::string& rel, int depth) {
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      ::close(fd);
      return true;
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    std::sort(names.begin(), names.end());
    bool ok = true;
    for (const auto& name : names) {
      if (stop_ != nullptr && stop_->load()) {
        error = "stopping";
        ok = false;
        break;
      }
      if (!entry(::dirfd(d), name, rel.empty() ? name : rel + "/" + name, depth)) {
        ok = false;
        break;
      }
    }
    ::closedir(d);
    return ok;
  }

 private:
  bool entry(int dfd, const std::string& name, const std::string& rel, int depth) {
    struct stat st {};
    if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return true;  // gone meanwhile
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) return true;
    core::UniqueFd fd;
    if (S_ISREG(st.st_mode)) {
      fd = core::UniqueFd(::openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      if (!fd.valid()) return true;  // unreadable: left out
      ::fstat(fd.get(), &st);         // what is read is what is described
    }
    std::unique_ptr<archive_entry, EntryDeleter> e(archive_entry_new());
    archive_entry_copy_pathname(e.get(), S_ISDIR(st.st_mode) ? (rel + "/").c_str() : rel.c_str());
    archive_entry_copy_stat(e.get(), &st);
    if (S_ISLNK(st.st_mode)) {
      std::string target(4096, '\0');
      const ssize_t n = ::readlinkat(dfd, name.c_str(), target.data(), target.size());
      if (n < 0) return true;
      target.resize(static_cast<size_t>(n));
      archive_entry_copy_symlink(e.get(), target.c_str());
      archive_entry_set_size(e.get(), 0);
    } else if (S_ISDIR(st.st_mode)) {
      archive_entry_set_size(e.get(), 0);
    }
    if (archive_write_header(a_, e.get()) < ARCHIVE_WARN) return fail();
    ++stats.entries;
    if (S_ISREG(st.st_mode)) {
      // Exactly the size in the header: a file that grows or shrinks meanwhile is cut or
      // padded with zeros, so the archive stays well-formed.
      uint64_t left = static_cast<uint64_t>(st.st_size);
      while (left > 0) {
        ssize_t n = ::read(fd.get(), buf_.data(), std::min<uint64_t>(left, buf_.size()));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          n = static_cast<ssize_t>(std::min<uint64_t>(left, buf_.size()));
          std::fill(buf_.begin(), buf_.begin() + n, '\0');
        }
        if (archive_write_data(a_, buf_.data(), static_cast<size_t>(n)) < 0) return fail();
        left -= static_cast<uint64_t>(n);
        stats.bytes_in += static_cast<uint64_t>(n);
      }
    } else if (S_ISDIR(st.st_mode) && depth + 1 < kMaxDepth) {
      const int sub = ::openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0 && !dir(sub, rel, depth + 1)) return false;
    }
    return true;
  }

  bool fail() {
    const char* msg = archive_error_string(a_);
    error = msg != nullptr ? msg : "archive write failed";
    return false;
  }

  struct archive* a_;
  const std::atomic<bool>* stop_;
  std::vector<char> buf_;
};

}  // namespace

core::Result<ArchiveFormat> archive_format(std::string_view name) {
  if (name == "tar") return ArchiveFormat::tar;
  if (name == "tar.gz" || name == "tgz") return ArchiveFormat::tar_gz;
  if (name == "zip") return ArchiveFormat::zip;
  return core::make_error(core::Errc::invalid_argument, "format must be tar, tar.gz or zip, got '" + std::string(name.substr(0, 32)) + "'");
}

core::Result<std::string> ArchiveStream::check(const std::string& path) const {
  auto p = resolver_.resolve(path);
  if (!p) return p.error();
  auto fd = resolver_.open_at(*p, O_RDONLY | O_DIRECTORY);
  if (!fd) {
    if (fd.error().code == core::Errc::invalid_argument) return core::make_error(core::Errc::invalid_argument, "not a directory: " + p->abs);
    return fd.error();
  }
  return p->abs;
}

core::Result<ArchiveStream::Stats> ArchiveStream::write(const std::string& path, ArchiveFormat format,
                                                        const std::function<bool(const char*, size_t)>& sink,
                                                        const std::atomic<bool>* stop) const {
  auto p = resolver_.resolve(path);
  if (!p) return p.error();
  auto fd = resolver_.open_at(*p, O_RDONLY | O_DIRECTORY);
  if (!fd) return fd.error();
  std::unique_ptr<struct archive, ArchiveDeleter> a(archive_write_new());
  if (format == ArchiveFormat::zip) {
    archive_write_set_format_zip(a.get());
  } else {
    archive_write_set_format_pax_restricted(a.get());
    if (format == ArchiveFormat::tar_gz) archive_write_add_filter_gzip(a.get());
  }
  archive_write_set_bytes_per_block(a.get(), static_cast<int>(kBlock));
  // No zero padding after the end: a zip reader looks for its central directory there.
  archive_write_set_bytes_in_last_block(a.get(), 1);
  SinkContext ctx{&sink};
  if (archive_write_open2(a.get(), &ctx, nullptr, write_cb, nullptr, nullptr) != ARCHIVE_OK) {
    return core::make_error(core::Errc::internal, std::string("cannot start the archive: ") + archive_error_string(a.get()));
  }
  Writer w(a.get(), stop);
  const bool ok = w.dir(fd->release(), "", 0);
  if (ok && archive_write_close(a.get()) != ARCHIVE_OK && !ctx.gone) {
    return core::make_error(core::Errc::internal, std::string("archive failed: ") + archive_error_string(a.get()));
  }
  if (ctx.gone) return core::make_error(core::Errc::unavailable, "the client went away");
  if (!ok) return core::make_error(core::Errc::internal, "archive failed: " + w.error);
  return w.stats;
}

}  // namespace execd::files
