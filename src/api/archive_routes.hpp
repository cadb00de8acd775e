#pragma once

#include <memory>

#include "files/archive_extract.hpp"
#include "files/file_service.hpp"
#include "http/http_server.hpp"

namespace execd::api {

/// Archives:
///   GET  /files/archive?path=DIR&format=tar|tar.gz|zip   -> the archive, streamed
///   POST /files/extract?path=DIR   (body: the archive)    -> {files, directories, links, bytes}
/// A zip-slip entry is 403, a bomb past the limits 413, a damaged archive 400; in each case
/// nothing is written. Extraction is charged to the service's disk quota.
void register_archive_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files,
                             files::ArchiveExtract::Limits limits, std::string spill_dir);

}  // namespace execd::api
