#include "files/archive_extract.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <vector>

#include <archive.h>
#include <archive_entry.h>

#include "files/atomic_writer.hpp"
#include "files/disk_quota.hpp"

namespace execd::files {
namespace {

struct ReadDeleter {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
using Reader = std::unique_ptr<struct archive, ReadDeleter>;

core::Result<Reader> open_reader(int fd) {
  if (::lseek(fd, 0, SEEK_SET) != 0) return core::make_error(core::Errc::internal, "cannot rewind the archive");
  Reader a(archive_read_new());
  archive_read_support_format_all(a.get());
  archive_read_support_filter_all(a.get());
  // By name, not archive_read_open_fd: only the file reader can seek, and zip needs
  // its central directory (modes, symlinks) that a streaming read never sees.
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  if (archive_read_open_filename(a.get(), proc.c_str(), 64 * 1024) != ARCHIVE_OK) {
    return core::make_error(core::Errc::invalid_argument, std::string("not a readable archive: ") + archive_error_string(a.get()));
  }
  return a;
}

core::Error bad_archive(struct archive* a) {
  const char* m = archive_error_string(a);
  return core::make_error(core::Errc::invalid_argument, std::string("the archive is damaged: ") + (m ? m : "read error"));
}

/// Whether a symlink at `rel` pointing to `target` stays inside the destination.
bool link_stays_inside(const std::string& rel, std::string_view target) {
  if (target.empty() || target[0] == '/') return false;
  int depth = 0;
  for (size_t i = 0; i < rel.size(); ++i) depth += rel[i] == '/';  // directories above the link
  size_t pos = 0;
  while (pos <= target.size()) {
    size_t next = target.find('/', pos);
    if (next == std::string_view::npos) next = target.size();
    const std::string_view part = target.substr(pos, next - pos);
    if (part == "..") {
      if (--depth < 0) return false;
    } else if (!part.empty() && part != ".") {
      ++depth;
    }
    pos = next + 1;
  }
  return true;
}

}  // namespace

core::Result<std::string> safe_entry_path(std::string_view name) {
  std::string out;
  if (name.empty()) return core::make_error(core::Errc::forbidden, "an archive entry has an empty name");
  if (name[0] == '/') return core::make_error(core::Errc::forbidden, "archive entry with an absolute path refused: " + std::string(name));
  if (name.find('\0') != std::string_view::npos) return core::make_error(core::Errc::forbidden, "archive entry name holds a NUL byte");
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t next = name.find('/', pos);
    if (next == std::string_view::npos) next = name.size();
    const std::string_view part = name.substr(pos, next - pos);
    if (part == "..") return core::make_error(core::Errc::forbidden, "archive entry leading out of the destination refused: " + std::string(name));
    if (!part.empty() && part != ".") {
      if (!out.empty()) out += '/';
      out.append(part);
    }
    pos = next + 1;
  }
  if (out.empty()) return std::string();  // "./": the destination itself
  return out;
}

core::Result<ArchiveExtract::Stats> ArchiveExtract::extract(int archive_fd, const std::string& dest) const {
  auto d = resolver_.resolve_creating_parents(dest);
  if (!d) return d.error();
  const std::string root = d->abs;
  if (!d->leaf.empty() && ::mkdirat(d->parent.get(), d->leaf.c_str(), 0777) != 0 && errno != EEXIST) {
    return errno_error(errno, "cannot create directory", root);
  }
  if (auto probe = resolver_.open_dir(root, true); !probe) return probe.error();

  // Pass 1: every entry's name, links, declared sizes and count, before anything is written.
  uint64_t declared = 0;
  uint64_t entries = 0;
  {
    auto a = open_reader(archive_fd);
    if (!a) return a.error();
    archive_entry* e = nullptr;
    for (;;) {
      const int r = archive_read_next_header(a->get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) return bad_archive(a->get());
      if (++entries > limits_.max_entries) {
        return core::make_error(core::Errc::too_large, "the archive holds more than " + std::to_string(limits_.max_entries) + " entries");
      }
      const char* name = archive_entry_pathname(e);
      auto rel = safe_entry_path(name ? name : "");
      if (!rel) return rel.error();
      if (const char* hl = archive_entry_hardlink(e); hl != nullptr) {
        if (auto t = safe_entry_path(hl); !t) return core::make_error(core::Errc::forbidden, "hardlink leading out of the destination refused: " + std::string(name) + " -> " + hl);
      } else if (archive_entry_filetype(e) == AE_IFLNK) {
        const char* target = archive_entry_symlink(e);
        if (target == nullptr || !link_stays_inside(*rel, target)) {
          return core::make_error(core::Errc::forbidden, "symlink leading out of the destination refused: " + std::string(name) +
                                                             " -> " + (target ? target : ""));
        }
      }
      if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0) declared += static_cast<uint64_t>(archive_entry_size(e));
      if (declared > limits_.max_bytes) {
        return core::make_error(core::Errc::too_large, "the archive expands to more than " + std::to_string(limits_.max_bytes) + " bytes");
      }
      // Skipping decompresses; bounded by the declared sizes checked above.
      if (archive_read_data_skip(a->get()) < ARCHIVE_WARN) return bad_archive(a->get());
    }
  }
  if (quota_ != nullptr) {
    if (auto room = quota_->check_room(declared, "the archive extracted to " + root); !room) return room.error();
  }

  // Pass 2: write, beneath the destination.
  const PathResolver jail(root);
  Stats stats;
  auto a = open_reader(archive_fd);
  if (!a) return a.error();
  std::vector<char> buf(64 * 1024);
  archive_entry* e = nullptr;
  for (;;) {
    const int r = archive_read_next_header(a->get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return bad_archive(a->get());
    auto rel = safe_entry_path(archive_entry_pathname(e));
    if (!rel) return rel.error();
    if (rel->empty()) continue;
    const std::string abs = root + "/" + *rel;
    const mode_t mode = archive_entry_perm(e) & 01777;  // no setuid/setgid from an archive
    if (const char* hl = archive_entry_hardlink(e); hl != nullptr) {
      auto from = jail.resolve(root + "/" + safe_entry_path(hl).value());
      auto to = jail.resolve_creating_parents(abs);
      if (!from) return from.error();
      if (!to) return to.error();
      ::unlinkat(to->parent.get(), to->leaf.c_str(), 0);
      if (::linkat(from->parent.get(), from->leaf.c_str(), to->parent.get(), to->leaf.c_str(), 0) != 0) {
        return errno_error(errno, "cannot link", abs);
      }
      ++stats.links;
      continue;
    }
    switch (archive_entry_filetype(e)) {
      case AE_IFDIR: {
        auto p = jail.resolve_creating_parents(abs);
        if (!p) return p.error();
        if (::mkdirat(p->parent.get(), p->leaf.c_str(), mode | 0700) != 0 && errno != EEXIST) {
          return errno_error(errno, "cannot create directory", abs);
        }
        ++stats.directories;
        break;
      }
      case AE_IFLNK: {
        auto p = jail.resolve_creating_parents(abs);
        if (!p) return p.error();
        ::unlinkat(p->parent.get(), p->leaf.c_str(), 0);
        if (::symlinkat(archive_entry_symlink(e), p->parent.get(), p->leaf.c_str()) != 0) return errno_error(errno, "cannot create symlink", abs);
        ++stats.links;
        break;
      }
      case AE_IFREG: {
        const uint64_t left = limits_.max_bytes - stats.bytes;
        auto w = AtomicWriter::open(jail, abs, left == 0 ? 1 : left, nullptr, quota_);  // 0 would mean unlimited
        if (!w) return w.error();
        for (;;) {
          const la_ssize_t n = archive_read_data(a->get(), buf.data(), buf.size());
          if (n < 0) return bad_archive(a->get());
          if (n == 0) break;
          if (auto wr = w->write(std::string_view(buf.data(), static_cast<size_t>(n))); !wr) {
            if (wr.error().code == core::Errc::too_large) {
              return core::make_error(core::Errc::too_large, "the archive expands to more than " + std::to_string(limits_.max_bytes) +
                                                                 " bytes (" + *rel + " is larger than it claims)");
            }
            return wr.error();
          }
        }
        stats.bytes += w->written();
        FileAttributes attrs;
        attrs.mode = mode;
        if (auto c = w->commit(attrs); !c) return c.error();
        ++stats.files;
        break;
      }
      default:
        break;  // devices, FIFOs, sockets: not made from an archive
    }
  }
  return stats;
}

}  // namespace execd::files
