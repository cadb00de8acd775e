#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "files/atomic_writer.hpp"
#include "files/file_service.hpp"

namespace execd::files {

/// One POST /files/upload: pairs of `metadata` (JSON: path, owner, group, mode) and
/// `file` parts, paired by order (compat-notes §6), fed part by part as they arrive.
/// A file part whose metadata came first streams straight into an AtomicWriter beside
/// its target; one that came before its metadata is spooled to an unlinked temp file
/// and copied over later. Nothing is renamed into place until finish() has seen the
/// whole body and every pair is valid, so a cut-off or bad upload changes no file.
class MultipartUpload {
 public:
  MultipartUpload(const FileService& files, std::string spill_dir);

  /// A new part begins (`name` is its form field name).
  core::Result<void> begin_part(const std::string& name);
  core::Result<void> append(std::string_view bytes);
  /// The body ended cleanly: validates the pairing and commits every file, in order.
  /// Returns the paths written.
  core::Result<std::vector<std::string>> finish();

 private:
  struct Metadata {
    std::string path;
    FileAttributes attrs;
  };
  struct FilePart {
    std::optional<AtomicWriter> writer;  // when its metadata came first
    core::UniqueFd spool;                // otherwise
    uint64_t bytes = 0;
  };
  core::Result<void> end_part();
  core::Result<Metadata> parse_metadata(const std::string& json) const;

  const FileService& files_;
  std::string spill_dir_;
  enum class Kind { none, metadata, file, other } current_ = Kind::none;
  std::string metadata_text_;
  std::vector<Metadata> metadata_;
  std::vector<FilePart> file_parts_;
};

}  // namespace execd::files
