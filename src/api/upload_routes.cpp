#include "api/upload_routes.hpp"

#include "files/multipart_upload.hpp"
#include "http/json_io.hpp"

namespace execd::api {

void register_upload_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files, std::string spill_dir) {
  server.route_streaming(
      http::HttpServer::Method::post, R"(/files/upload)",
      [files, spill_dir](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
        if (!req.is_multipart_form_data()) {
          return http::write_error(res, core::make_error(core::Errc::invalid_file,
                                                         "multipart form is empty: send multipart/form-data with "
                                                         "'metadata' and 'file' parts"));
        }
        files::MultipartUpload upload(*files, spill_dir);
        std::optional<core::Error> failure;
        const bool complete = reader(
            [&](const httplib::MultipartFormData& part) {
              if (auto r = upload.begin_part(part.name); !r) failure = r.error();
              return !failure;
            },
            [&](const char* data, size_t len) {
              if (auto r = upload.append(std::string_view(data, len)); !r) failure = r.error();
              return !failure;
            });
        // Any failure drops every temp file (the upload's destructor); nothing on disk changed.
        if (failure) return http::write_error(res, *failure);
        if (!complete) {
          return http::write_error(res, core::make_error(core::Errc::invalid_file_content,
                                                         "multipart body is malformed or was cut off; no file was changed"));
        }
        auto written = upload.finish();
        if (!written) return http::write_error(res, written.error());
        http::write_json(res, {{"files", *written}});
      });
}

}  // namespace execd::api
