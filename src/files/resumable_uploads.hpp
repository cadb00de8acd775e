#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "files/atomic_writer.hpp"
#include "files/file_service.hpp"

namespace execd::files {

/// Uploads that survive broken connections (the tus 1.0 core protocol's model): an
/// upload is created with its final length and target, bytes are appended at the
/// offset the server reports, and when the last byte arrives the file is renamed into
/// place (atomically, as every write here). Until then the target is untouched; bytes
/// live in a temp file beside it. Unfinished uploads expire `expiry` after their last
/// activity and their temp files are removed. Thread-safe.
class ResumableUploads {
 public:
  struct Status {
    std::string id;
    std::string path;
    uint64_t offset = 0;
    uint64_t length = 0;
    bool complete = false;
    std::chrono::system_clock::time_point expires;
  };

  ResumableUploads(const FileService& files, std::chrono::seconds expiry);

  /// Validates the target (parents created, not a directory) and the length against
  /// --max-upload-bytes (too_large).
  core::Result<Status> create(const std::string& path, uint64_t length, const FileAttributes& attrs);
  /// not_found for an unknown (or expired) id.
  core::Result<Status> status(const std::string& id);
  /// Appends a request body as it arrives: `feed` is called with a sink that takes
  /// chunks (false from the sink stops the body). `offset` must equal the current offset
  /// (conflict otherwise); bytes past the declared length are refused. Bytes received
  /// before a broken connection are kept. Completes the upload at its length.
  core::Result<Status> append(const std::string& id, uint64_t offset,
                              const std::function<bool(const std::function<bool(std::string_view)>&)>& feed);
  /// Drops an upload and its temp file.
  core::Result<void> terminate(const std::string& id);
  /// Removes expired uploads; returns how many.
  size_t sweep();

 private:
  struct Upload {
    std::mutex mu;  // one append at a time
    std::string id;
    std::string path;
    uint64_t length = 0;
    FileAttributes attrs;
    std::optional<AtomicWriter> writer;
    bool complete = false;
    std::chrono::system_clock::time_point expires;
  };
  Status status_of(const Upload& u) const;
  std::shared_ptr<Upload> find(const std::string& id);

  const FileService& files_;
  std::chrono::seconds expiry_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Upload>> uploads_;
};

}  // namespace execd::files
