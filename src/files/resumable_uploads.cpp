#include "files/resumable_uploads.hpp"

#include "core/id.hpp"

namespace execd::files {

ResumableUploads::ResumableUploads(const FileService& files, std::chrono::seconds expiry)
    : files_(files), expiry_(expiry) {}

ResumableUploads::Status ResumableUploads::status_of(const Upload& u) const {
  Status s;
  s.id = u.id;
  s.path = u.path;
  s.length = u.length;
  s.complete = u.complete;
  s.offset = u.complete ? u.length : (u.writer ? u.writer->written() : 0);
  s.expires = u.expires;
  return s;
}

std::shared_ptr<ResumableUploads::Upload> ResumableUploads::find(const std::string& id) {
  sweep();  // an expired upload is gone, whenever it is asked about
  std::lock_guard<std::mutex> lock(mu_);
  auto it = uploads_.find(id);
  return it == uploads_.end() ? nullptr : it->second;
}

core::Result<ResumableUploads::Status> ResumableUploads::create(const std::string& path, uint64_t length,
                                                               const FileAttributes& attrs) {
  sweep();
  const uint64_t max = files_.options().max_upload_bytes;
  if (max > 0 && length > max) {
    return core::make_error(core::Errc::too_large, "upload of " + std::to_string(length) + " bytes exceeds the limit of " +
                                                       std::to_string(max) + " bytes (--max-upload-bytes)");
  }
  auto writer = files_.open_writer(path, max);
  if (!writer) return writer.error();
  auto u = std::make_shared<Upload>();
  u->id = core::new_id();
  u->path = writer->path();
  u->length = length;
  u->attrs = attrs;
  u->expires = std::chrono::system_clock::now() + expiry_;
  if (length == 0) {
    if (auto r = writer->commit(attrs); !r) return r.error();
    u->complete = true;
  } else {
    u->writer.emplace(std::move(*writer));
  }
  std::lock_guard<std::mutex> lock(mu_);
  uploads_[u->id] = u;
  return status_of(*u);
}

core::Result<ResumableUploads::Status> ResumableUploads::status(const std::string& id) {
  auto u = find(id);
  if (!u) return core::make_error(core::Errc::not_found, "upload not found (unknown or expired): " + id);
  std::lock_guard<std::mutex> lock(u->mu);
  return status_of(*u);
}

core::Result<ResumableUploads::Status> ResumableUploads::append(
    const std::string& id, uint64_t offset, const std::function<bool(const std::function<bool(std::string_view)>&)>& feed) {
  auto u = find(id);
  if (!u) return core::make_error(core::Errc::not_found, "upload not found (unknown or expired): " + id);
  std::unique_lock<std::mutex> lock(u->mu, std::try_to_lock);
  if (!lock.owns_lock()) return core::make_error(core::Errc::conflict, "upload " + id + " is receiving another PATCH");
  if (u->complete) return core::make_error(core::Errc::conflict, "upload " + id + " is already complete");
  const uint64_t current = u->writer->written();
  if (offset != current) {
    return core::make_error(core::Errc::conflict, "Upload-Offset " + std::to_string(offset) + " does not match the upload's offset " +
                                                      std::to_string(current));
  }
  std::optional<core::Error> failure;
  feed([&](std::string_view chunk) {
    if (u->writer->written() + chunk.size() > u->length) {
      failure = core::make_error(core::Errc::too_large, "body goes past Upload-Length " + std::to_string(u->length));
      return false;
    }
    if (auto r = u->writer->write(chunk); !r) {
      failure = r.error();
      return false;
    }
    return true;
  });
  u->expires = std::chrono::system_clock::now() + expiry_;
  if (failure) return *failure;
  if (u->writer->written() == u->length) {
    if (auto r = u->writer->commit(u->attrs); !r) {
      // The temp file is gone with the failed commit: the upload cannot continue.
      lock.unlock();
      std::lock_guard<std::mutex> all(mu_);
      uploads_.erase(id);
      return r.error();
    }
    u->complete = true;
    u->writer.reset();
  }
  return status_of(*u);
}

core::Result<void> ResumableUploads::terminate(const std::string& id) {
  std::shared_ptr<Upload> u;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = uploads_.find(id);
    if (it == uploads_.end()) return core::make_error(core::Errc::not_found, "upload not found (unknown or expired): " + id);
    u = it->second;
    uploads_.erase(it);
  }
  std::lock_guard<std::mutex> lock(u->mu);
  if (u->writer) u->writer->abort();
  return {};
}

size_t ResumableUploads::sweep() {
  const auto now = std::chrono::system_clock::now();
  std::vector<std::shared_ptr<Upload>> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = uploads_.begin(); it != uploads_.end();) {
      std::unique_lock<std::mutex> busy(it->second->mu, std::try_to_lock);
      if (busy.owns_lock() && it->second->expires < now) {
        expired.push_back(it->second);
        it = uploads_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& u : expired) {
    std::lock_guard<std::mutex> lock(u->mu);
    if (u->writer) u->writer->abort();
  }
  return expired.size();
}

}  // namespace execd::files
