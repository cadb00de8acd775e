#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "files/file_service.hpp"

namespace execd::files {

class DiskQuota;

/// One exact edit: replace `old_text` by `new_text`, which must occur exactly
/// `expected_replacements` times (1 by default: the match must be unique).
struct TextEdit {
  std::string old_text;
  std::string new_text;
  uint64_t expected_replacements = 1;
};

/// Applies `edits` in order to `content` (each sees the result of the previous ones) and
/// returns the new text, or `conflict` naming which edit failed, how many times its `old`
/// occurs and the first lines where it does. When `old` is absent but the text uses CRLF
/// line ends and `old`/`new` use bare LF, the edit is retried with CRLF: agents send `\n`.
/// `replacements` gets the total count. `subject` names the file in messages.
core::Result<std::string> apply_text_edits(std::string content, const std::vector<TextEdit>& edits,
                                           const std::string& subject, uint64_t& replacements);

/// What an edit did: the absolute path, how many replacements, and a unified diff.
struct EditOutcome {
  std::string path;
  uint64_t replacements = 0;
  std::string diff;
};

/// The read-modify-write of POST /files/edit on a FileService's files: reads the file,
/// applies every edit (all or nothing), writes the result through an AtomicWriter with
/// the file's mode and owner kept. If the file changed on disk between the read and the
/// rename (another writer), the edit is refused with `conflict` and nothing is written,
/// so an edit never silently drops someone else's change. Stateless; any thread.
class TextEditor {
 public:
  /// The write is charged to the service's quota, if it has one (FileService::open_writer).
  explicit TextEditor(const FileService& files) : files_(files) {}

  core::Result<EditOutcome> edit(const std::string& path, const std::vector<TextEdit>& edits) const;

  static constexpr uint64_t kMaxFileBytes = 64ull << 20;  ///< larger files are not edited in memory

 private:
  const FileService& files_;
};

}  // namespace execd::files
