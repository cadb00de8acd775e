#include "support/sse_reader.hpp"

namespace execd::test {

std::vector<SseEvent> SseResponse::of_type(const std::string& type) const {
  std::vector<SseEvent> out;
  for (const auto& e : events) {
    if (e.type() == type) out.push_back(e);
  }
  return out;
}

std::vector<SseEvent> SseParser::feed(const std::string& chunk, int& comments) {
  std::vector<SseEvent> out;
  buf_ += chunk;
  size_t pos = 0;
  for (;;) {
    const size_t end = buf_.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string block = buf_.substr(pos, end - pos);
    pos = end + 2;
    SseEvent ev;
    bool has_data = false;
    size_t lpos = 0;
    while (lpos <= block.size()) {
      size_t lend = block.find('\n', lpos);
      if (lend == std::string::npos) lend = block.size();
      const std::string line = block.substr(lpos, lend - lpos);
      lpos = lend + 1;
      if (line.empty()) continue;
      if (line[0] == ':') {
        ++comments;
      } else if (line.rfind("id:", 0) == 0) {
        ev.id = line.substr(line.size() > 3 && line[3] == ' ' ? 4 : 3);
      } else if (line.rfind("data:", 0) == 0) {
        if (has_data) ev.data += "\n";
        ev.data += line.substr(line.size() > 5 && line[5] == ' ' ? 6 : 5);
        has_data = true;
      } else if (line[0] == '{') {  // raw JSON framing (the Go daemon's)
        ev.data = line;
        has_data = true;
      }
    }
    if (has_data) {
      ev.json = nlohmann::json::parse(ev.data, nullptr, false);
      if (ev.json.is_discarded()) ev.json = nullptr;
      out.push_back(std::move(ev));
    }
  }
  buf_.erase(0, pos);
  return out;
}

SseResponse sse_request(int port, const SseRequest& r) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_tcp_nodelay(true);
  cli.set_connection_timeout(std::chrono::seconds(5));
  cli.set_read_timeout(r.timeout);
  cli.set_write_timeout(std::chrono::seconds(30));

  SseResponse out;
  SseParser parser;
  bool stopped = false;
  httplib::Request req;
  req.method = r.method;
  req.path = r.path;
  req.headers = r.headers;
  if (!r.body.empty()) {
    req.body = r.body;
    req.set_header("Content-Type", "application/json");
  }
  req.response_handler = [&](const httplib::Response& res) {
    out.status = res.status;
    out.headers = res.headers;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    std::string chunk(data, len);
    out.raw += chunk;
    for (auto& ev : parser.feed(chunk, out.comments)) {
      out.events.push_back(ev);
      if (r.on_event && !r.on_event(out.events.back())) {
        stopped = true;
        return false;
      }
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool ok = cli.send(req, res, err);
  if (out.status == 0) out.status = res.status;
  if (ok) {
    out.ended = true;
    if (out.raw.empty() && !res.body.empty()) out.raw = res.body;  // non-streamed error bodies
  } else if (!stopped) {
    out.error = httplib::to_string(err);
  }
  return out;
}

}  // namespace execd::test
