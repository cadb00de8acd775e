#pragma once

#include <memory>

#include "files/file_service.hpp"
#include "http/http_server.hpp"

namespace execd::api {

/// Files and directories (OpenSandbox contract, compat-notes §6):
///   GET    /files/info?path=..[&path=..]   -> {"<path>": FileInfo}
///   DELETE /files?path=..                  -> removes files (missing is fine)
///   POST   /files/mv          [{"src","dest"}]
///   POST   /files/permissions {"<path>": {"mode","owner","group"}}
///   GET    /files/search?path=D&pattern=P  -> [FileInfo]
///   POST   /files/replace[?verbose=true] {"<path>": {"old","new"}}
///   GET    /directories/list?path=D&depth=N -> [FileInfo]
///   POST   /directories       {"<dir>": {"mode","owner","group"}}
///   DELETE /directories?path=..
void register_file_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files);

/// FileInfo as the contract's JSON.
nlohmann::json file_info_json(const files::FileInfo& f);

}  // namespace execd::api
