#include "files/multipart_upload.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "core/fd_io.hpp"
#include "core/json_parse.hpp"
#include "core/temp_file.hpp"

namespace execd::files {
namespace {

constexpr size_t kMaxMetadata = 64 * 1024;

core::Error bad_metadata(const std::string& why) { return core::make_error(core::Errc::invalid_file_metadata, why); }

}  // namespace

MultipartUpload::MultipartUpload(const FileService& files, std::string spill_dir)
    : files_(files), spill_dir_(std::move(spill_dir)) {}

core::Result<MultipartUpload::Metadata> MultipartUpload::parse_metadata(const std::string& text) const {
  auto parsed = core::parse_json(text);
  if (!parsed || !parsed->is_object()) {
    return bad_metadata("metadata part is not a JSON object" + (parsed ? std::string() : " (" + parsed.error().message + ")") +
                        ": " + text.substr(0, 200));
  }
  const nlohmann::json& j = *parsed;
  Metadata m;
  auto path = j.find("path");
  if (path == j.end() || !path->is_string() || path->get<std::string>().empty()) {
    return bad_metadata("metadata needs a non-empty string 'path'");
  }
  m.path = path->get<std::string>();
  auto req = FileService::attribute_request(j, "the metadata for " + m.path);
  if (!req) return bad_metadata(req.error().message);
  auto attrs = FileService::attributes(*req);
  if (!attrs) return bad_metadata("metadata for " + m.path + ": " + attrs.error().message);
  m.attrs = *attrs;
  return m;
}

core::Result<void> MultipartUpload::end_part() {
  if (current_ == Kind::metadata) {
    auto m = parse_metadata(metadata_text_);
    if (!m) return m.error();
    metadata_.push_back(std::move(*m));
    metadata_text_.clear();
  }
  current_ = Kind::none;
  return {};
}

core::Result<void> MultipartUpload::begin_part(const std::string& name) {
  if (auto r = end_part(); !r) return r;
  if (name == "metadata") {
    current_ = Kind::metadata;
    return {};
  }
  if (name != "file") {
    current_ = Kind::other;  // unknown fields are ignored
    return {};
  }
  current_ = Kind::file;
  FilePart part;
  const size_t index = file_parts_.size();
  if (index < metadata_.size()) {
    auto w = files_.open_writer(metadata_[index].path, files_.options().max_upload_bytes);
    if (!w) return w.error();
    part.writer.emplace(std::move(*w));
  } else {
    part.spool = core::open_unlinked_temp(spill_dir_);
    if (!part.spool.valid()) return errno_error(errno, "cannot spool an upload part in", spill_dir_.empty() ? "$TMPDIR" : spill_dir_);
  }
  file_parts_.push_back(std::move(part));
  return {};
}

core::Result<void> MultipartUpload::append(std::string_view bytes) {
  switch (current_) {
    case Kind::metadata:
      if (metadata_text_.size() + bytes.size() > kMaxMetadata) return bad_metadata("metadata part is larger than 64 KiB");
      metadata_text_.append(bytes);
      return {};
    case Kind::file: {
      auto& part = file_parts_.back();
      part.bytes += bytes.size();
      if (part.writer) return part.writer->write(bytes);
      const uint64_t max = files_.options().max_upload_bytes;
      if (max > 0 && part.bytes > max) {
        return core::make_error(core::Errc::too_large, "upload part exceeds the limit of " + std::to_string(max) + " bytes (--max-upload-bytes)");
      }
      if (!core::write_all(part.spool.get(), bytes)) return errno_error(errno, "cannot spool the upload", "");
      return {};
    }
    default: return {};
  }
}

core::Result<std::vector<std::string>> MultipartUpload::finish() {
  if (auto r = end_part(); !r) return r.error();
  if (metadata_.empty() && file_parts_.empty()) {
    return core::make_error(core::Errc::invalid_file, "multipart form is empty: expected 'metadata' and 'file' parts");
  }
  if (metadata_.empty()) return bad_metadata("no 'metadata' part: each file needs one");
  if (file_parts_.empty()) return core::make_error(core::Errc::invalid_file_content, "no 'file' part: each metadata needs one");
  if (metadata_.size() != file_parts_.size()) {
    return core::make_error(core::Errc::invalid_file, std::to_string(metadata_.size()) + " metadata parts but " +
                                                          std::to_string(file_parts_.size()) + " file parts");
  }
  // Spooled parts get their writers now; then everything is committed in order.
  for (size_t i = 0; i < file_parts_.size(); ++i) {
    auto& part = file_parts_[i];
    if (part.writer) continue;
    auto w = files_.open_writer(metadata_[i].path, files_.options().max_upload_bytes);
    if (!w) return w.error();
    ::lseek(part.spool.get(), 0, SEEK_SET);
    if (auto r = w->copy_from(part.spool.get()); !r) return r.error();
    part.writer.emplace(std::move(*w));
    part.spool.reset();
  }
  std::vector<std::string> written;
  for (size_t i = 0; i < file_parts_.size(); ++i) {
    if (auto r = file_parts_[i].writer->commit(metadata_[i].attrs); !r) return r.error();
    written.push_back(file_parts_[i].writer->path());
  }
  return written;
}

}  // namespace execd::files
