#include "api/tus_routes.hpp"

#include <charconv>
#include <ctime>
#include <map>

#include "exec/event.hpp"
#include "http/json_io.hpp"

namespace execd::api {
namespace {

using Method = http::HttpServer::Method;
constexpr const char* kTusVersion = "1.0.0";

bool parse_u64(const std::string& s, uint64_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

core::Result<std::string> base64_decode(const std::string& in) {
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const auto pos = kAlphabet.find(c);
    if (pos == std::string::npos) return core::make_error(core::Errc::invalid_argument, "Upload-Metadata value is not base64");
    acc = (acc << 6) | static_cast<uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// "key b64,key b64" -> map
core::Result<std::map<std::string, std::string>> parse_metadata(const std::string& header) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  while (i < header.size()) {
    size_t j = header.find(',', i);
    if (j == std::string::npos) j = header.size();
    std::string pair = header.substr(i, j - i);
    while (!pair.empty() && pair.front() == ' ') pair.erase(0, 1);
    const auto space = pair.find(' ');
    const std::string key = pair.substr(0, space);
    if (!key.empty()) {
      auto v = space == std::string::npos ? core::Result<std::string>(std::string()) : base64_decode(pair.substr(space + 1));
      if (!v) return v.error();
      out[key] = *v;
    }
    i = j + 1;
  }
  return out;
}

std::string http_date(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

void tus_headers(httplib::Response& res) { res.set_header("Tus-Resumable", kTusVersion); }

void write_status(httplib::Response& res, const files::ResumableUploads::Status& s, int status) {
  tus_headers(res);
  res.status = status;
  res.set_header("Upload-Offset", std::to_string(s.offset));
  res.set_header("Upload-Length", std::to_string(s.length));
  if (!s.complete) res.set_header("Upload-Expires", http_date(s.expires));
  res.set_header("Cache-Control", "no-store");
}

bool check_version(const httplib::Request& req, httplib::Response& res) {
  if (req.get_header_value("Tus-Resumable") == kTusVersion) return true;
  tus_headers(res);
  res.set_header("Tus-Version", kTusVersion);
  http::write_error(res, core::make_error(core::Errc::invalid_argument, "header Tus-Resumable: 1.0.0 is required"));
  res.status = 412;
  return false;
}

}  // namespace

void register_tus_routes(http::HttpServer& server, std::shared_ptr<files::ResumableUploads> uploads,
                         uint64_t max_upload_bytes) {
  server.route(Method::options, R"(/files/uploads)", [max_upload_bytes](const httplib::Request&, httplib::Response& res) {
    tus_headers(res);
    res.set_header("Tus-Version", kTusVersion);
    res.set_header("Tus-Extension", "creation,expiration,termination");
    if (max_upload_bytes > 0) res.set_header("Tus-Max-Size", std::to_string(max_upload_bytes));
    res.status = 204;
  });

  server.route(Method::post, R"(/files/uploads)", [uploads](const httplib::Request& req, httplib::Response& res) {
    if (!check_version(req, res)) return;
    uint64_t length = 0;
    if (!parse_u64(req.get_header_value("Upload-Length"), length)) {
      tus_headers(res);
      return http::write_error(res, core::make_error(core::Errc::invalid_argument, "header Upload-Length (bytes) is required"));
    }
    auto meta = parse_metadata(req.get_header_value("Upload-Metadata"));
    if (!meta) return http::write_error(res, meta.error());
    const std::string path = meta->count("path") != 0 ? (*meta)["path"] : req.get_param_value("path");
    if (path.empty()) {
      tus_headers(res);
      return http::write_error(res, core::make_error(core::Errc::invalid_argument, "Upload-Metadata needs 'path' (base64), or ?path="));
    }
    files::AttributeRequest ar;
    if (meta->count("mode") != 0) {
      uint64_t m = 0;
      if (!parse_u64((*meta)["mode"], m)) return http::write_error(res, core::make_error(core::Errc::invalid_argument, "metadata mode must be digits like 644"));
      ar.mode = static_cast<int64_t>(m);
    }
    if (meta->count("owner") != 0) ar.owner = (*meta)["owner"];
    if (meta->count("group") != 0) ar.group = (*meta)["group"];
    auto attrs = files::FileService::attributes(ar);
    if (!attrs) return http::write_error(res, attrs.error());
    auto created = uploads->create(path, length, *attrs);
    if (!created) {
      tus_headers(res);
      return http::write_error(res, created.error());
    }
    write_status(res, *created, 201);
    res.set_header("Location", "/files/uploads/" + created->id);
  });

  // GET serves HEAD too (httplib): the offset is in the headers, the body is a summary.
  server.route(Method::get, R"(/files/uploads/([^/]+))", [uploads](const httplib::Request& req, httplib::Response& res) {
    auto s = uploads->status(req.matches[1]);
    if (!s) {
      tus_headers(res);
      return http::write_error(res, s.error());
    }
    write_status(res, *s, 200);
    res.set_content(exec::dump_json({{"id", s->id}, {"path", s->path}, {"offset", s->offset}, {"length", s->length}, {"complete", s->complete}}),
                    "application/json");
  });

  server.route_streaming(Method::patch, R"(/files/uploads/([^/]+))",
                         [uploads](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
                           if (!check_version(req, res)) return;
                           if (req.get_header_value("Content-Type") != "application/offset+octet-stream") {
                             tus_headers(res);
                             http::write_error(res, core::make_error(core::Errc::invalid_argument, "Content-Type must be application/offset+octet-stream"));
                             res.status = 415;
                             return;
                           }
                           uint64_t offset = 0;
                           if (!parse_u64(req.get_header_value("Upload-Offset"), offset)) {
                             tus_headers(res);
                             return http::write_error(res, core::make_error(core::Errc::invalid_argument, "header Upload-Offset is required"));
                           }
                           auto s = uploads->append(req.matches[1], offset, [&](const std::function<bool(std::string_view)>& sink) {
                             return reader([&](const char* data, size_t len) { return sink(std::string_view(data, len)); });
                           });
                           if (!s) {
                             tus_headers(res);
                             return http::write_error(res, s.error());
                           }
                           write_status(res, *s, 204);
                         });

  server.route(Method::del, R"(/files/uploads/([^/]+))", [uploads](const httplib::Request& req, httplib::Response& res) {
    if (!check_version(req, res)) return;
    tus_headers(res);
    if (auto r = uploads->terminate(req.matches[1]); !r) return http::write_error(res, r.error());
    res.status = 204;
  });
}

}  // namespace execd::api
