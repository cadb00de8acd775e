#include "api/watch_routes.hpp"

#include "http/json_io.hpp"
#include "http/sse_writer.hpp"

namespace execd::api {

void register_watch_routes(http::HttpServer& server, std::shared_ptr<WatchHub> hub) {
  server.route(http::HttpServer::Method::get, R"(/files/watch)",
               [&server, hub](const httplib::Request& req, httplib::Response& res) {
    const std::string path = req.get_param_value("path");
    if (path.empty()) {
      return http::write_error(res, core::make_error(core::Errc::missing_parameter, "query parameter 'path' is required"));
    }
    const std::string rec = req.get_param_value("recursive");
    if (!rec.empty() && rec != "true" && rec != "false" && rec != "1" && rec != "0") {
      return http::write_error(res, core::make_error(core::Errc::invalid_argument, "query parameter 'recursive' must be true or false"));
    }
    auto resume = http::resume_after(req);
    if (!resume) return http::write_error(res, resume.error());
    auto attached = hub->attach(path, rec.empty() || rec == "true" || rec == "1");
    if (!attached) return http::write_error(res, attached.error());
    // A resume position names an event of the watch it came from; a new watch starts over.
    const uint64_t after = attached->fresh ? 0 : *resume;
    http::stream_events(res, attached->source, exec::Cursor{after}, server.sse_options());
  });
}

}  // namespace execd::api
