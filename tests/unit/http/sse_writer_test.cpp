#include <doctest/doctest.h>

#include "http/http_server.hpp"
#include "http/sse_writer.hpp"
#include "support/sse_reader.hpp"

using namespace execd;

TEST_CASE("an event is framed as id + data + blank line, and parses back") {
  exec::Event e = exec::events::stdout_text("hello\nworld");
  e.seq = 42;
  const std::string framed = http::format_sse_event(e);
  CHECK(framed.rfind("id: 42\ndata: {", 0) == 0);
  CHECK(framed.size() >= 2);
  CHECK(framed.substr(framed.size() - 2) == "\n\n");
  // The JSON holds the newline escaped, so the event is one data line.
  CHECK(std::count(framed.begin(), framed.end(), '\n') == 3);
  int comments = 0;
  test::SseParser parser;
  auto parsed = parser.feed(framed.substr(0, 10), comments);
  CHECK(parsed.empty());
  parsed = parser.feed(framed.substr(10) + http::kSseKeepalive, comments);
  REQUIRE(parsed.size() == 1);
  CHECK(parsed[0].id == "42");
  CHECK(parsed[0].json["text"] == "hello\nworld");
  CHECK(comments == 1);
}

TEST_CASE("Last-Event-ID and ?after= name where to resume; anything but a seq is an error naming it") {
  httplib::Request req;
  CHECK(http::resume_after(req).value() == 0);
  req.set_header("Last-Event-ID", "17");
  CHECK(http::resume_after(req).value() == 17);
  httplib::Request q;
  q.params.emplace("after", "5");
  CHECK(http::resume_after(q).value() == 5);
  for (const char* text : {"17abc", "-5", "", "99999999999999999999999"}) {
    httplib::Request bad_header;
    bad_header.set_header("Last-Event-ID", text);
    if (*text != '\0') {
      auto r = http::resume_after(bad_header);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().message.find("Last-Event-ID") != std::string::npos);
    }
    httplib::Request bad_param;
    bad_param.params.emplace("after", text);
    auto r = http::resume_after(bad_param);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("'after'") != std::string::npos);
  }
}
