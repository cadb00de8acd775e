#include "files/text_edit.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "files/disk_quota.hpp"
#include "files/unified_diff.hpp"

namespace execd::files {
namespace {

std::vector<size_t> find_all(const std::string& text, const std::string& needle) {
  std::vector<size_t> at;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + needle.size())) {
    at.push_back(pos);
  }
  return at;
}

std::string to_crlf(const std::string& s) {
  std::string out;
  out.reserve(s.size() + s.size() / 16);
  for (char c : s) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

bool has_bare_lf_only(const std::string& s) { return s.find('\r') == std::string::npos && s.find('\n') != std::string::npos; }

/// "lines 3, 9 and 12" for the first few occurrences.
std::string lines_of(const std::string& text, const std::vector<size_t>& at) {
  constexpr size_t kShown = 5;
  std::string out = at.size() == 1 ? "line " : "lines ";
  size_t line = 1;
  size_t from = 0;
  for (size_t i = 0; i < at.size() && i < kShown; ++i) {
    for (size_t p = from; p < at[i]; ++p) line += text[p] == '\n';
    from = at[i];
    if (i > 0) out += ", ";
    out += std::to_string(line);
  }
  if (at.size() > kShown) out += ", ...";
  return out;
}

bool same_version(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

}  // namespace

core::Result<std::string> apply_text_edits(std::string content, const std::vector<TextEdit>& edits,
                                           const std::string& subject, uint64_t& replacements) {
  replacements = 0;
  if (edits.empty()) return core::make_error(core::Errc::invalid_argument, "no edits given");
  for (size_t i = 0; i < edits.size(); ++i) {
    const auto& e = edits[i];
    const std::string which = edits.size() > 1 ? "edit " + std::to_string(i + 1) + " of " + std::to_string(edits.size()) + ": " : "";
    if (e.old_text.empty()) return core::make_error(core::Errc::invalid_argument, which + "'old' must not be empty");
    if (e.expected_replacements == 0) {
      return core::make_error(core::Errc::invalid_argument, which + "'expected_replacements' must be at least 1");
    }
    std::string old_text = e.old_text;
    std::string new_text = e.new_text;
    auto at = find_all(content, old_text);
    if (at.empty() && has_bare_lf_only(old_text) && content.find("\r\n") != std::string::npos) {
      old_text = to_crlf(old_text);
      new_text = to_crlf(new_text);
      at = find_all(content, old_text);
    }
    if (at.empty()) {
      return core::make_error(core::Errc::conflict,
                              which + "'old' was not found in " + subject +
                                  " (it must match exactly, whitespace and line ends included)");
    }
    if (at.size() != e.expected_replacements) {
      return core::make_error(core::Errc::conflict,
                              which + "'old' occurs " + std::to_string(at.size()) + " times in " + subject + " (at " +
                                  lines_of(content, at) + "), expected " + std::to_string(e.expected_replacements) +
                                  (e.expected_replacements == 1 ? ": give more context to make it unique, or set expected_replacements" : ""));
    }
    std::string out;
    out.reserve(content.size() + at.size() * new_text.size());
    size_t pos = 0;
    for (size_t hit : at) {
      out.append(content, pos, hit - pos);
      out += new_text;
      pos = hit + old_text.size();
    }
    out.append(content, pos, std::string::npos);
    content = std::move(out);
    replacements += at.size();
  }
  return content;
}

core::Result<EditOutcome> TextEditor::edit(const std::string& path, const std::vector<TextEdit>& edits) const {
  {
    // Editing through a symlink would replace the link by a file: refuse, name the target.
    auto p = files_.resolver().resolve(path);
    if (!p) return p.error();
    struct stat st {};
    if (!p->leaf.empty() && ::fstatat(p->parent.get(), p->leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
      return core::make_error(core::Errc::invalid_argument, p->abs + " is a symlink; edit the file it points to");
    }
  }
  auto file = files_.open_read(path);
  if (!file) return file.error();
  struct stat before {};
  if (::fstat(file->fd.get(), &before) != 0) return errno_error(errno, "cannot stat", file->abs);
  if (static_cast<uint64_t>(before.st_size) > kMaxFileBytes) {
    return core::make_error(core::Errc::too_large, file->abs + " is larger than the " +
                                                       std::to_string(kMaxFileBytes >> 20) + " MiB an edit reads");
  }
  std::string content(static_cast<size_t>(before.st_size), '\0');
  size_t got = 0;
  while (got < content.size()) {
    const ssize_t n = ::pread(file->fd.get(), content.data() + got, content.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(errno, "cannot read", file->abs);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  content.resize(got);

  EditOutcome outcome;
  outcome.path = file->abs;
  auto edited = apply_text_edits(content, edits, file->abs, outcome.replacements);
  if (!edited) return edited.error();

  auto w = files_.open_writer(file->abs);
  if (!w) return w.error();
  if (auto r = w->write(*edited); !r) return r.error();

  // The file must still be the version we read: same inode (not replaced) and same size
  // and mtime (not written in place). Otherwise another writer's change would be lost.
  struct stat now_fd {};
  struct stat now_path {};
  auto p = files_.resolver().resolve(file->abs);
  if (!p) return p.error();
  if (::fstat(file->fd.get(), &now_fd) != 0 || ::fstatat(p->parent.get(), p->leaf.c_str(), &now_path, AT_SYMLINK_NOFOLLOW) != 0 ||
      !same_version(before, now_fd) || !same_version(before, now_path)) {
    return core::make_error(core::Errc::conflict, file->abs + " changed while it was being edited; nothing was written, read it again and retry");
  }

  FileAttributes keep;
  keep.mode = file->mode & 07777;
  if (file->uid != ::geteuid()) keep.uid = file->uid;
  if (file->gid != ::getegid()) keep.gid = file->gid;
  if (auto r = w->commit(keep); !r) return r.error();
  outcome.diff = unified_diff(file->abs, content, *edited);
  return outcome;
}

}  // namespace execd::files
