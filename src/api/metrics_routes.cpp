#include "api/metrics_routes.hpp"

#include "http/json_io.hpp"

namespace execd::api {

void register_metrics_routes(http::HttpServer& server, std::shared_ptr<metrics::MetricsSampler> sampler,
                             std::shared_ptr<const metrics::Registry> prometheus) {
  server.route(http::HttpServer::Method::get, "/metrics", [sampler, prometheus](const httplib::Request& req,
                                                                                httplib::Response& res) {
    const std::string format = req.get_param_value("format");
    if (format == "prometheus") {
      res.set_content(prometheus->render(), metrics::Registry::kContentType);
      return;
    }
    if (!format.empty() && format != "json") {
      http::write_error(res, core::make_error(core::Errc::invalid_argument,
                                              "unknown metrics format '" + format + "' (json or prometheus)"));
      return;
    }
    const metrics::HostMetrics m = sampler->latest();
    if (m.timestamp == 0) {
      http::write_error(res, core::make_error(core::Errc::unavailable, "no metrics sample is available yet"));
      return;
    }
    http::write_json(res, metrics::to_json(m));
  });
  server.route(http::HttpServer::Method::get, "/metrics/watch",
               [&server, sampler](const httplib::Request& req, httplib::Response& res) {
                 auto after = http::resume_after(req);
                 if (!after) return http::write_error(res, after.error());
                 http::stream_events(res, sampler, exec::Cursor{*after}, server.sse_options(/*ends_at_terminal=*/false));
               });
}

}  // namespace execd::api
