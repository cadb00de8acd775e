#pragma once

#include <memory>

#include "files/resumable_uploads.hpp"
#include "http/http_server.hpp"

namespace execd::api {

/// Resumable uploads, tus 1.0 core + creation, expiration and termination (so existing
/// tus clients work), under /files/uploads:
///   OPTIONS /files/uploads          -> 204, Tus-Version / Tus-Extension / Tus-Max-Size
///   POST    /files/uploads          Upload-Length, Upload-Metadata "path <base64>[,mode
///                                   <b64>][,owner <b64>][,group <b64>]" -> 201 + Location
///   HEAD    /files/uploads/{id}     -> Upload-Offset, Upload-Length
///   PATCH   /files/uploads/{id}     application/offset+octet-stream at Upload-Offset
///                                   -> 204 + new Upload-Offset; the last byte renames the
///                                   file into place
///   DELETE  /files/uploads/{id}     -> 204, temp file removed
void register_tus_routes(http::HttpServer& server, std::shared_ptr<files::ResumableUploads> uploads,
                         uint64_t max_upload_bytes);

}  // namespace execd::api
