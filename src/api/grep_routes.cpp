#include "api/grep_routes.hpp"

#include <charconv>

#include "exec/event.hpp"
#include "files/content_search.hpp"
#include "http/json_io.hpp"
#include "http/sse_writer.hpp"

namespace execd::api {
namespace {

core::Result<bool> bool_param(const httplib::Request& req, const std::string& name) {
  const std::string v = req.get_param_value(name);
  if (v.empty() || v == "false" || v == "0") return false;
  if (v == "true" || v == "1") return true;
  return core::make_error(core::Errc::invalid_argument, "query parameter '" + name + "' must be true or false, got '" + v.substr(0, 32) + "'");
}

core::Result<uint64_t> uint_param(const httplib::Request& req, const std::string& name, uint64_t fallback, uint64_t max) {
  const std::string v = req.get_param_value(name);
  if (!req.has_param(name.c_str())) return fallback;
  uint64_t out = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || out > max) {
    return core::make_error(core::Errc::invalid_argument, "query parameter '" + name + "' must be an integer between 0 and " +
                                                              std::to_string(max) + ", got '" + v.substr(0, 32) + "'");
  }
  return out;
}

core::Result<files::GrepQuery> query_of(const httplib::Request& req, std::chrono::milliseconds timeout) {
  files::GrepQuery q;
  q.path = req.get_param_value("path");
  if (q.path.empty()) return core::make_error(core::Errc::missing_parameter, "query parameter 'path' is required");
  q.pattern = req.get_param_value("pattern");
  if (q.pattern.empty()) return core::make_error(core::Errc::missing_parameter, "query parameter 'pattern' is required");
  q.glob = req.get_param_value("glob");
  q.timeout = timeout;
  for (auto [name, field] : {std::pair{"fixed", &q.fixed}, {"ignore_case", &q.ignore_case}, {"gitignore", &q.gitignore}}) {
    auto b = bool_param(req, name);
    if (!b) return b.error();
    *field = *b;
  }
  auto context = uint_param(req, "context", 0, files::GrepQuery::kMaxContext);
  if (!context) return context.error();
  q.context = static_cast<int>(*context);
  auto max_results = uint_param(req, "max_results", q.max_results, files::GrepQuery::kMaxResults);
  if (!max_results) return max_results.error();
  q.max_results = *max_results;
  auto per_file = uint_param(req, "max_bytes_per_file", q.max_bytes_per_file, q.max_total_bytes);
  if (!per_file) return per_file.error();
  q.max_bytes_per_file = *per_file;
  return q;
}

nlohmann::json match_json(const files::GrepMatch& m) {
  nlohmann::json j = {{"path", m.path}, {"line", m.line}, {"column", m.column}, {"text", m.text}};
  if (m.text_cut) j["text_cut"] = true;
  if (!m.before.empty()) j["before"] = m.before;
  if (!m.after.empty()) j["after"] = m.after;
  return j;
}

nlohmann::json summary_json(const files::GrepSummary& s) {
  nlohmann::json j = {{"matches", s.matches},         {"files_searched", s.files_searched},
                      {"files_binary", s.files_binary}, {"bytes_searched", s.bytes_searched},
                      {"truncated", s.truncated}};
  if (s.truncated) j["truncated_by"] = s.truncated_by;
  return j;
}

/// SSE frames batched into one write per 32 KiB or 100 ms, so a search with many matches
/// is not a syscall per line.
class FrameBatch {
 public:
  explicit FrameBatch(httplib::DataSink& sink) : sink_(sink) {}
  bool add(exec::Event e) {
    e.seq = ++seq_;
    out_ += http::format_sse_event(e);
    const auto now = std::chrono::steady_clock::now();
    if (out_.size() < 32 * 1024 && now - last_ < std::chrono::milliseconds(100)) return true;
    last_ = now;
    return flush();
  }
  bool flush() {
    if (out_.empty()) return true;
    const bool ok = sink_.write(out_.data(), out_.size());
    out_.clear();
    return ok;
  }

 private:
  httplib::DataSink& sink_;
  std::string out_;
  uint64_t seq_ = 0;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

}  // namespace

void register_grep_routes(http::HttpServer& server, std::shared_ptr<files::FileService> files,
                          std::chrono::milliseconds timeout) {
  const std::atomic<bool>* stopping = server.sse_options().stopping;
  server.route(http::HttpServer::Method::get, R"(/files/grep)",
               [files, timeout, stopping](const httplib::Request& req, httplib::Response& res) {
    auto q = query_of(req, timeout);
    if (!q) return http::write_error(res, q.error());
    files::ContentSearch search(files->resolver());
    if (auto r = search.check(*q); !r) return http::write_error(res, r.error());
    const std::string format = req.get_param_value("format");
    if (format == "json") {
      nlohmann::json matches = nlohmann::json::array();
      auto s = search.run(*q, [&](const files::GrepMatch& m) {
        matches.push_back(match_json(m));
        return true;
      }, stopping);
      if (!s) return http::write_error(res, s.error());
      return http::write_json(res, {{"matches", std::move(matches)}, {"summary", summary_json(*s)}});
    }
    if (!format.empty() && format != "sse") {
      return http::write_error(res, core::make_error(core::Errc::invalid_argument, "query parameter 'format' must be json or sse"));
    }
    auto query = std::make_shared<files::GrepQuery>(std::move(q).value());
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [files, query, stopping](size_t, httplib::DataSink& sink) {
      FrameBatch batch(sink);
      files::ContentSearch search(files->resolver());
      auto s = search.run(*query, [&](const files::GrepMatch& m) {
        return batch.add(exec::events::custom("match", match_json(m)));
      }, stopping);
      if (!s) {
        // The checks passed a moment ago; the tree changed since.
        batch.add(exec::events::error("GrepError", s.error().message, {}));
      } else if (!s->cancelled) {
        batch.add(exec::events::custom("summary", summary_json(*s)));
      }
      if (!batch.flush()) return false;
      sink.done();
      return true;
    });
  });
}

}  // namespace execd::api
