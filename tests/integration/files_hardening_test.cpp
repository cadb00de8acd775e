// Hostile and heavy input to the files API and to polling routes (issue 10, "Files and
// polling"): doublestar `**/` in searches, patterns that would be exponential for an
// expanding or backtracking matcher, the search time bound, names the OS cannot take,
// strict numeric query parameters, and a line read of a file without newlines.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "support/daemon_process.hpp"
#include "support/proc_probe.hpp"
#include "support/http_checks.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::TempDir;
using execd::test::status_kib;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string enc(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) != 0 || c == '/' || c == '.' || c == '-' || c == '_') {
      out += static_cast<char>(c);
    } else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", c);
      out += b;
    }
  }
  return out;
}

// Search results as paths relative to `root`, sorted.
std::set<std::string> search(const DaemonProcess& d, const std::string& root, const std::string& pattern) {
  auto r = d.client()->Get("/files/search?path=" + enc(root) + "&pattern=" + enc(pattern));
  REQUIRE(r);
  REQUIRE(r->status == 200);
  std::set<std::string> out;
  for (const auto& f : json::parse(r->body)) out.insert(f["path"].get<std::string>().substr(root.size() + 1));
  return out;
}

}  // namespace

TEST_CASE("search: **/ matches zero or more directories; base-name patterns match at any depth") {
  TempDir dir;
  dir.write("a.txt", "");
  dir.write("x/b.txt", "");
  dir.write("x/y/c.txt", "");
  dir.write("x/y/d.log", "");
  dir.write("src/m.py", "");
  dir.write("src/pkg/sub/n.py", "");
  dir.write("lib/o.py", "");
  DaemonProcess d;
  const std::set<std::string> txt{"a.txt", "x/b.txt", "x/y/c.txt"};
  CHECK(search(d, dir.str(), "**/*.txt") == txt);
  CHECK(search(d, dir.str(), "*.txt") == txt);
  CHECK(search(d, dir.str(), "**/*.{txt,log}").size() == 4);
  CHECK(search(d, dir.str(), "src/**/*.py") == std::set<std::string>{"src/m.py", "src/pkg/sub/n.py"});
  CHECK(search(d, dir.str(), "x/*/*.txt") == std::set<std::string>{"x/y/c.txt"});
  CHECK(search(d, dir.str(), dir.str() + "/x/**") == std::set<std::string>{"x/b.txt", "x/y/c.txt", "x/y/d.log"});
  CHECK(search(d, dir.str(), "**").size() == 7);
}

TEST_CASE("search: exponential patterns answer at once; over-long patterns are a 400") {
  TempDir dir;
  for (int i = 0; i < 30; ++i) dir.write("f" + std::to_string(i) + (i % 2 != 0 ? "ab" : ""), "");
  DaemonProcess d;
  std::string braces;
  for (int i = 0; i < 50; ++i) braces += "{a,b}";
  std::string stars;
  for (int i = 0; i < 100; ++i) stars += "*a";
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(search(d, dir.str(), braces).empty());
  CHECK(search(d, dir.str(), "f*" + braces.substr(0, 10)).size() == 15);
  CHECK(search(d, dir.str(), stars + "b").empty());
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  // (A pattern past httplib's 8 KiB request line never reaches us: 414 from the library.)
  auto r = d.client()->Get("/files/search?path=" + enc(dir.str()) + "&pattern=" + std::string(5000, 'a'));
  check_error(r, 400, "INVALID_REQUEST_BODY", "4096");
}

TEST_CASE("search: a time bound ends it with what it found, and says so") {
  TempDir dir;
  DaemonProcess d({"--search-timeout", "300ms"});
  // The whole filesystem, for a name nothing has: only the clock can end it quickly.
  const auto t0 = std::chrono::steady_clock::now();
  auto r = d.client()->Get("/files/search?path=/&pattern=no-such-name-" + std::to_string(getpid()));
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(took < std::chrono::seconds(3));
  CHECK(r->get_header_value("EXECD-RESULTS-TRUNCATED-BY") == "time");
  CHECK(r->get_header_value("EXECD-RESULTS-TRUNCATED") == "0");
  CHECK(json::parse(r->body).empty());
  // A complete search carries neither header.
  dir.write("one", "");
  auto whole = d.client()->Get("/files/search?path=" + enc(dir.str()));
  REQUIRE(whole);
  CHECK_FALSE(whole->has_header("EXECD-RESULTS-TRUNCATED"));
  CHECK_FALSE(whole->has_header("EXECD-RESULTS-TRUNCATED-BY"));
}

TEST_CASE("names the OS cannot take are a 400 on every files route, never a silent success") {
  TempDir dir;
  DaemonProcess d;
  const std::string long_path = dir.str() + "/" + std::string(5000, 'p');          // > PATH_MAX
  const std::string deep_missing = dir.str() + "/no/such/" + std::string(300, 'n');  // > NAME_MAX, parent missing
  std::string many_parts = dir.str() + "/missing";
  while (many_parts.size() < 5000) many_parts += "/abcdefgh";
  for (const auto& [path, needle] : std::vector<std::pair<std::string, std::string>>{
           {long_path, "PATH_MAX"}, {deep_missing, "NAME_MAX"}, {many_parts, "PATH_MAX"}}) {
    CAPTURE(needle);
    const std::string q = "?path=" + enc(path);
    auto c = d.client();
    check_error(c->Delete("/files" + q), 400, "INVALID_REQUEST_BODY", needle);
    check_error(c->Delete("/directories" + q), 400, "INVALID_REQUEST_BODY", needle);
    check_error(c->Get("/files/info" + q), 400, "INVALID_REQUEST_BODY", needle);
    check_error(c->Get("/files/download" + q), 400, "INVALID_REQUEST_BODY", needle);
    check_error(c->Get("/files/search" + q), 400, "INVALID_REQUEST_BODY", needle);
    check_error(c->Get("/directories/list" + q), 400, "INVALID_REQUEST_BODY", needle);
    const json attrs{{path, json::object()}};
    check_error(c->Post("/directories", attrs.dump(), "application/json"), 400, "INVALID_REQUEST_BODY", needle);
    check_error(c->Post("/files/permissions", json{{path, {{"mode", 644}}}}.dump(), "application/json"), 400,
                "INVALID_REQUEST_BODY", needle);
    check_error(c->Post("/files/replace", json{{path, {{"old", "a"}, {"new", "b"}}}}.dump(), "application/json"), 400,
                "INVALID_REQUEST_BODY", needle);
    dir.write("src", "x");
    check_error(c->Post("/files/mv", json::array({{{"src", dir.str() + "/src"}, {"dest", path}}}).dump(), "application/json"),
                400, "INVALID_REQUEST_BODY", needle);
  }
  check_error(d.client()->Delete("/files?path=" + enc(dir.str()) + "/a%00b"), 400, "INVALID_REQUEST_BODY", "NUL");
  CHECK(fs::exists(dir.path() / "src"));
}

TEST_CASE("numeric query parameters are strict: a bad one is a 400 naming it") {
  DaemonProcess d;
  execd::test::SseRequest start;
  start.method = "POST";
  start.path = "/command";
  start.body = json{{"command", "echo one; echo two"}}.dump();
  auto run = execd::test::sse_request(d.port(), start);
  REQUIRE(run.status == 200);
  REQUIRE_FALSE(run.events.empty());
  const std::string id = run.events[0].json.value("text", "");
  REQUIRE_FALSE(id.empty());
  const std::string events = "/executions/" + id + "/events?format=json&";
  auto c = d.client();
  for (const auto& [query, name] : std::vector<std::pair<std::string, std::string>>{
           {"cursor=-5", "cursor"}, {"cursor=abc", "cursor"}, {"cursor=12345678901234567890123", "cursor"},
           {"limit=-1", "limit"}, {"limit=abc", "limit"}, {"limit=0", "limit"}, {"after=-1", "after"},
           {"after=1x", "after"}, {"wait_ms=-3", "wait_ms"}, {"wait_ms=", "wait_ms"}, {"after=1&after=2", "after"}}) {
    CAPTURE(query);
    check_error(c->Get(events + query), 400, "INVALID_REQUEST_BODY", "'" + name + "'");
    // The SSE form reads the same parameters the same way.
    check_error(c->Get("/executions/" + id + "/events?" + query), 400, "INVALID_REQUEST_BODY", "'" + name + "'");
  }
  check_error(c->Get(events + "cursor=1&after=1"), 400, "INVALID_REQUEST_BODY", "not both");
  // Every other stream that resumes reads its position as strictly.
  for (const std::string& stream : {"/command/" + id + "/events", std::string("/metrics/watch")}) {
    CAPTURE(stream);
    check_error(c->Get(stream + "?after=abc"), 400, "INVALID_REQUEST_BODY", "'after'");
    check_error(c->Get(stream + "?after=-1"), 400, "INVALID_REQUEST_BODY", "'after'");
    check_error(c->Get(stream, {{"Last-Event-ID", "7x"}}), 400, "INVALID_REQUEST_BODY", "Last-Event-ID");
  }
  check_error(c->Get("/executions/" + id + "/events", {{"Last-Event-ID", "x"}}), 400, "INVALID_REQUEST_BODY",
              "Last-Event-ID");
  // Good values still page: cursor (the name the page answers with) and limit.
  auto first = c->Get(events + "limit=1");
  REQUIRE(first);
  REQUIRE(first->status == 200);
  auto page = json::parse(first->body);
  CHECK(page["events"].size() == 1);
  auto next = c->Get(events + "cursor=" + std::to_string(page["cursor"].get<uint64_t>()));
  REQUIRE(next);
  REQUIRE(next->status == 200);
  auto rest = json::parse(next->body);
  CHECK(rest["done"] == true);
  auto all = c->Get(events.substr(0, events.size() - 1));
  REQUIRE(all);
  CHECK(json::parse(all->body)["events"].size() == rest["events"].size() + 1);

  TempDir dir;
  const auto file = dir.write("lines.txt", "a\nb\nc\n");
  for (const char* query : {"offset=-1", "offset=abc", "limit=0", "limit=99999999999999999999999", "offset=1.5"}) {
    CAPTURE(query);
    check_error(c->Get("/files/download?path=" + enc(file.string()) + "&" + query), 400, "INVALID_REQUEST_BODY",
                std::string(query).substr(0, std::string(query).find('=')));
  }
  auto lines = c->Get("/files/download?path=" + enc(file.string()) + "&offset=2&limit=5");
  REQUIRE(lines);
  CHECK(lines->body == "b\nc");
  auto past = c->Get("/files/download?path=" + enc(file.string()) + "&offset=99");
  REQUIRE(past);
  CHECK(past->status == 200);
  CHECK(past->body.empty());
  check_error(c->Get("/directories/list?path=" + enc(dir.str()) + "&depth=-1"), 400, "INVALID_REQUEST_BODY", "depth");
  check_error(c->Get("/directories/list?path=" + enc(dir.str()) + "&depth=99999999999999999999"), 400,
              "INVALID_REQUEST_BODY", "depth");
}

TEST_CASE("a line read of a file without newlines does not hold the file in memory") {
  TempDir dir;
  const auto file = dir.path() / "one-line.bin";
  {
    std::ofstream out(file, std::ios::binary);
  }
  fs::resize_file(file, 256 << 20);  // 256 MiB of zeros (sparse), one line
  {
    std::ofstream out(file, std::ios::binary | std::ios::app);
    out << "\nsecond";
  }
  DaemonProcess d;
  const long before = status_kib(d.pid(), "VmHWM");
  auto r = d.client()->Get("/files/download?path=" + enc(file.string()) + "&offset=2");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "second");
  const long after = status_kib(d.pid(), "VmHWM");
  INFO("peak RSS before " << before << " KiB, after " << after << " KiB");
  CHECK(after - before < 32 * 1024);
}

TEST_CASE("walks stop at 1024 levels: a deeper tree is listed and searched to there, and rm -rf refuses it") {
  TempDir dir;
  // 1100 levels, built one openat at a time as a user's mkdir/cd loop would.
  fs::create_directory(dir.path() / "t");
  int fd = ::open((dir.path() / "t").c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(fd >= 0);
  for (int i = 0; i < 1100; ++i) {
    REQUIRE(::mkdirat(fd, "d", 0755) == 0);
    const int sub = ::openat(fd, "d", O_RDONLY | O_DIRECTORY);
    REQUIRE(sub >= 0);
    ::close(fd);
    fd = sub;
  }
  const int bottom = ::openat(fd, "bottom.txt", O_CREAT | O_WRONLY, 0644);
  REQUIRE(bottom >= 0);
  ::close(bottom);
  ::close(fd);
  std::ofstream(dir.path() / "t" / "top.txt") << "x";
  DaemonProcess d;
  auto listed = d.client()->Get("/directories/list?path=" + enc((dir.path() / "t").string()) + "&depth=5000");
  REQUIRE(listed);
  REQUIRE(listed->status == 200);
  CHECK(json::parse(listed->body).size() == 1025);  // top.txt and 1024 levels of d
  CHECK(search(d, (dir.path() / "t").string(), "*.txt") == std::set<std::string>{"top.txt"});
  check_error(d.client()->Delete("/directories?path=" + enc((dir.path() / "t").string())), 400, "INVALID_REQUEST_BODY",
              "1024 levels");
  CHECK(fs::exists(dir.path() / "t" / "d" / "d"));
  auto ping = d.client()->Get("/ping");
  REQUIRE(ping);
  CHECK(ping->status == 200);
  execd::test::shell_output("rm -rf '" + (dir.path() / "t").string() + "'");
}

TEST_CASE("upload metadata nested past the JSON depth limit is a 400, and the daemon stays up") {
  DaemonProcess d;
  TempDir dir;
  const std::string deep = std::string(20000, '[') + std::string(20000, ']');  // under the 64 KiB part cap
  httplib::MultipartFormDataItems items = {{"metadata", deep, "metadata", "application/json"},
                                           {"file", "x", "blob", "application/octet-stream"}};
  auto r = d.client()->Post("/files/upload", items);
  check_error(r, 400, "INVALID_FILE_METADATA", "deeper than 256");
  CHECK(d.client()->Get("/ping")->status == 200);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "x"));
}

TEST_CASE("an error answer to a ranged request is whole JSON, never a slice of it (found by fuzz_http_request)") {
  DaemonProcess d;
  auto r = d.client()->Get("/files/download?path=/nonexistent/x", {{"Range", "bytes=10-20"}});
  check_error(r, 404, "FILE_NOT_FOUND", "/nonexistent/x");
  CHECK_FALSE(r->has_header("Content-Range"));
  auto ping = d.client()->Get("/ping", {{"Range", "bytes=0-1"}});
  REQUIRE(ping);
  CHECK(ping->status == 200);
  CHECK_FALSE(ping->has_header("Content-Range"));
}
