#pragma once

#include <memory>
#include <string>

#include "files/file_service.hpp"
#include "http/http_server.hpp"

namespace execd::api {

/// POST /files/upload — multipart pairs of `metadata` + `file` parts, streamed to disk
/// as they arrive and renamed into place only when the whole body was good.
void register_upload_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files, std::string spill_dir);

}  // namespace execd::api
