#include "api/upload_routes.hpp"

#include "files/multipart_upload.hpp"
#include "http/json_io.hpp"
#include "http/multipart_reader.hpp"

namespace execd::api {

void register_upload_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files, std::string spill_dir) {
  server.route_streaming(
      http::HttpServer::Method::post, R"(/files/upload)",
      [files, spill_dir](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
        auto boundary = http::MultipartReader::boundary_of(req.get_header_value("Content-Type"));
        if (!boundary) {
          return http::write_error(res, core::make_error(core::Errc::invalid_file,
                                                         "multipart form is empty: send multipart/form-data with "
                                                         "'metadata' and 'file' parts"));
        }
        files::MultipartUpload upload(*files, spill_dir);
        std::optional<core::Error> failure;
        http::MultipartReader parts(
            *boundary,
            [&](const std::string& name, const std::string&) {
              if (auto r = upload.begin_part(name); !r) failure = r.error();
              return !failure;
            },
            [&](std::string_view bytes) {
              if (auto r = upload.append(bytes); !r) failure = r.error();
              return !failure;
            });
        // httplib parses any multipart body itself, byte by byte; relabelled, the body
        // comes to us raw and MultipartReader parses it. The Request is httplib's own
        // non-const object.
        auto& headers = const_cast<httplib::Request&>(req).headers;  // case-insensitive multimap
        auto [first, last] = headers.equal_range("Content-Type");
        for (auto it = first; it != last; ++it) it->second = "application/x-execd-multipart";
        const bool received = reader([&](const char* data, size_t len) { return parts.feed(std::string_view(data, len)); });
        // Any failure drops every temp file (the upload's destructor); nothing on disk changed.
        if (failure) return http::write_error(res, *failure);
        if (!parts.error().empty()) return http::write_error(res, core::make_error(core::Errc::invalid_file, parts.error()));
        if (!received || !parts.done()) {
          return http::write_error(res, core::make_error(core::Errc::invalid_file_content,
                                                         "multipart body is malformed or was cut off; no file was changed"));
        }
        auto written = upload.finish();
        if (!written) return http::write_error(res, written.error());
        http::write_json(res, {{"files", *written}});
      });
}

}  // namespace execd::api
