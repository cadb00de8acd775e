#include "api/process_routes.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/clock.hpp"
#include "http/json_io.hpp"
#include "process/proc_table.hpp"

namespace execd::api {
namespace {

using Method = http::HttpServer::Method;

nlohmann::json process_json(const process::ProcessInfo& p) {
  return {{"pid", p.pid},
          {"ppid", p.ppid},
          {"pgid", p.pgid},
          {"uid", p.uid},
          {"user", p.user},
          {"state", std::string(1, p.state)},
          {"command", p.command},
          {"cpu_percent", std::round(p.cpu_percent * 10.0) / 10.0},
          {"rss_bytes", p.rss_bytes},
          {"started_at", core::rfc3339_nano(std::chrono::system_clock::time_point(std::chrono::milliseconds(p.start_time_ms)))}};
}

}  // namespace

void register_process_routes(http::HttpServer& server) {
  server.route(Method::get, R"(/processes)", [](const httplib::Request&, httplib::Response& res) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& p : process::list_processes()) out.push_back(process_json(p));
    http::write_json(res, out);
  });

  server.route(Method::get, R"(/processes/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
    pid_t pid = 0;
    const std::string text = req.matches[1];
    std::from_chars(text.data(), text.data() + text.size(), pid);
    auto p = process::read_process(pid);
    if (!p) return http::write_error(res, p.error());
    http::write_json(res, process_json(*p));
  });

  server.route(Method::del, R"(/processes/([^/]+))", [](const httplib::Request& req, httplib::Response& res) {
    const std::string text = req.matches[1];
    pid_t pid = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
    if (ec != std::errc() || ptr != text.data() + text.size() || pid <= 0) {
      return http::write_error(res, core::make_error(core::Errc::invalid_argument, "pid must be a positive integer, got '" + text + "'"));
    }
    auto sig = process::parse_signal(req.has_param("signal") ? req.get_param_value("signal") : "TERM");
    if (!sig) return http::write_error(res, sig.error());
    if (pid == 1 || pid == getpid()) {
      return http::write_error(res, core::make_error(core::Errc::forbidden, pid == 1 ? "refusing to signal pid 1 (init)"
                                                                                  : "refusing to signal the daemon itself"));
    }
    if (::kill(pid, *sig) != 0) {
      const int err = errno;
      if (err == ESRCH) return http::write_error(res, core::make_error(core::Errc::not_found, "no such process: " + text));
      if (err == EPERM) {
        return http::write_error(res, core::make_error(core::Errc::permission_denied, "not allowed to signal process " + text));
      }
      return http::write_error(res, core::make_error(core::Errc::internal, std::string("kill failed: ") + std::strerror(err)));
    }
    http::write_json(res, {{"pid", pid}, {"signal", sigabbrev_np(*sig) != nullptr ? sigabbrev_np(*sig) : std::to_string(*sig)}});
  });
}

}  // namespace execd::api
