#include "api/archive_routes.hpp"

#include <unistd.h>

#include "core/temp_file.hpp"
#include "files/archive_stream.hpp"
#include "http/json_io.hpp"

namespace execd::api {

void register_archive_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files,
                             files::ArchiveExtract::Limits limits, std::string spill_dir) {
  const std::atomic<bool>* stopping = server.sse_options().stopping;
  server.route(http::HttpServer::Method::get, R"(/files/archive)",
               [files, stopping](const httplib::Request& req, httplib::Response& res) {
    const std::string path = req.get_param_value("path");
    if (path.empty()) {
      return http::write_error(res, core::make_error(core::Errc::missing_parameter, "query parameter 'path' is required"));
    }
    auto format = files::archive_format(req.has_param("format") ? req.get_param_value("format") : "tar.gz");
    if (!format) return http::write_error(res, format.error());
    auto abs = files::ArchiveStream(files->resolver()).check(path);
    if (!abs) return http::write_error(res, abs.error());
    const char* type = *format == files::ArchiveFormat::zip ? "application/zip"
                       : *format == files::ArchiveFormat::tar ? "application/x-tar" : "application/gzip";
    const char* ext = *format == files::ArchiveFormat::zip ? ".zip" : *format == files::ArchiveFormat::tar ? ".tar" : ".tar.gz";
    std::string name = abs->substr(abs->rfind('/') + 1);
    if (name.empty()) name = "root";
    for (auto& c : name) {
      if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = '_';
    }
    res.set_header("Content-Disposition", "attachment; filename=\"" + name + ext + "\"");
    const std::string dir = *abs;
    const auto fmt = *format;
    res.set_chunked_content_provider(type, [files, dir, fmt, stopping](size_t, httplib::DataSink& sink) {
      auto r = files::ArchiveStream(files->resolver()).write(dir, fmt, [&](const char* d, size_t n) { return sink.write(d, n); },
                                                             stopping);
      // Headers are gone: a failure can only cut the body short, which the client sees.
      if (!r) return false;
      sink.done();
      return true;
    });
  });

  server.route_streaming(http::HttpServer::Method::post, R"(/files/extract)",
                         [files, limits, spill_dir](const httplib::Request& req, httplib::Response& res,
                                                           const httplib::ContentReader& reader) {
    const std::string path = req.get_param_value("path");
    if (path.empty()) {
      return http::write_error(res, core::make_error(core::Errc::missing_parameter, "query parameter 'path' is required"));
    }
    // The archive is spooled to an unlinked temp file: libarchive reads it twice (check,
    // then write), and a client that stops half-way leaves nothing behind.
    core::UniqueFd spool = core::open_unlinked_temp(spill_dir);
    if (!spool.valid()) return http::write_error(res, core::make_error(core::Errc::internal, "cannot create a temp file for the archive"));
    uint64_t received = 0;
    bool over = false;
    bool write_failed = false;
    const bool ok = reader([&](const char* data, size_t len) {
      received += len;
      if (received > limits.max_bytes) {
        over = true;
        return false;
      }
      while (len > 0) {
        const ssize_t n = ::write(spool.get(), data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          write_failed = true;
          return false;
        }
        data += n;
        len -= static_cast<size_t>(n);
      }
      return true;
    });
    if (over) return http::write_error(res, core::make_error(core::Errc::too_large, "the archive is larger than " + std::to_string(limits.max_bytes) + " bytes"));
    if (write_failed) return http::write_error(res, core::make_error(core::Errc::no_space, "cannot spool the archive"));
    if (!ok) return http::write_error(res, core::make_error(core::Errc::invalid_argument, "the archive was not received whole"));
    if (received == 0) return http::write_error(res, core::make_error(core::Errc::invalid_argument, "send the archive as the request body"));
    auto stats = files::ArchiveExtract(files->resolver(), limits, files->quota()).extract(spool.get(), path);
    if (!stats) return http::write_error(res, stats.error());
    http::write_json(res, {{"files", stats->files}, {"directories", stats->directories}, {"links", stats->links}, {"bytes", stats->bytes}});
  });
}

}  // namespace execd::api
