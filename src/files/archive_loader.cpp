// libarchive, loaded on the first archive request instead of when the daemon starts
// (core::LazyLibrary says why: it maps libxml2, ICU, nettle, lzma, zstd, lz4, bz2 and acl,
// ~1.7 MiB of an idle daemon's RSS). The binary does not link libarchive; it defines the
// functions files/archive_stream.cpp and files/archive_extract.cpp call, each forwarding
// to the real one. Missing library: calls fail as libarchive's do (ARCHIVE_FATAL, NULL).
#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <cerrno>

#include "core/lazy_library.hpp"

namespace {

execd::core::LazyLibrary& libarchive() {
  static execd::core::LazyLibrary lib("libarchive.so.13");  // process-wide, like the library itself
  return lib;
}

}  // namespace

using Archive = struct archive;
using Entry = struct archive_entry;

EXECD_LAZY_FORWARD(libarchive(), Entry*, nullptr, archive_entry_new, (void), ())
EXECD_LAZY_FORWARD(libarchive(), void, (void)0, archive_entry_free, (Entry * e), (e))
EXECD_LAZY_FORWARD(libarchive(), void, (void)0, archive_entry_copy_pathname, (Entry * e, const char* p), (e, p))
EXECD_LAZY_FORWARD(libarchive(), void, (void)0, archive_entry_copy_stat, (Entry * e, const struct stat* st), (e, st))
EXECD_LAZY_FORWARD(libarchive(), void, (void)0, archive_entry_copy_symlink, (Entry * e, const char* p), (e, p))
EXECD_LAZY_FORWARD(libarchive(), void, (void)0, archive_entry_set_size, (Entry * e, la_int64_t n), (e, n))
EXECD_LAZY_FORWARD(libarchive(), __LA_MODE_T, 0, archive_entry_filetype, (Entry * e), (e))
EXECD_LAZY_FORWARD(libarchive(), __LA_MODE_T, 0, archive_entry_perm, (Entry * e), (e))
EXECD_LAZY_FORWARD(libarchive(), const char*, nullptr, archive_entry_hardlink, (Entry * e), (e))
EXECD_LAZY_FORWARD(libarchive(), const char*, nullptr, archive_entry_pathname, (Entry * e), (e))
EXECD_LAZY_FORWARD(libarchive(), const char*, nullptr, archive_entry_symlink, (Entry * e), (e))
EXECD_LAZY_FORWARD(libarchive(), la_int64_t, 0, archive_entry_size, (Entry * e), (e))
EXECD_LAZY_FORWARD(libarchive(), int, 0, archive_entry_size_is_set, (Entry * e), (e))
EXECD_LAZY_FORWARD(libarchive(), const char*, "libarchive is not available", archive_error_string, (Archive * a), (a))
EXECD_LAZY_FORWARD(libarchive(), Archive*, nullptr, archive_read_new, (void), ())
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_read_free, (Archive * a), (a))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_read_support_filter_all, (Archive * a), (a))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_read_support_format_all, (Archive * a), (a))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_read_open_filename, (Archive * a, const char* f, size_t n),
                   (a, f, n))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_read_next_header, (Archive * a, Entry** e), (a, e))
EXECD_LAZY_FORWARD(libarchive(), la_ssize_t, ARCHIVE_FATAL, archive_read_data, (Archive * a, void* b, size_t n), (a, b, n))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_read_data_skip, (Archive * a), (a))
EXECD_LAZY_FORWARD(libarchive(), Archive*, nullptr, archive_write_new, (void), ())
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_write_free, (Archive * a), (a))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_write_close, (Archive * a), (a))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_write_add_filter_gzip, (Archive * a), (a))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_write_set_format_pax_restricted, (Archive * a), (a))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_write_set_format_zip, (Archive * a), (a))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_write_set_bytes_per_block, (Archive * a, int n), (a, n))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_write_set_bytes_in_last_block, (Archive * a, int n), (a, n))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_write_header, (Archive * a, Entry* e), (a, e))
EXECD_LAZY_FORWARD(libarchive(), la_ssize_t, ARCHIVE_FATAL, archive_write_data, (Archive * a, const void* b, size_t n),
                   (a, b, n))
EXECD_LAZY_FORWARD(libarchive(), int, ARCHIVE_FATAL, archive_write_open2,
                   (Archive * a, void* c, archive_open_callback* o, archive_write_callback* w, archive_close_callback* cl,
                    archive_free_callback* f),
                   (a, c, o, w, cl, f))
