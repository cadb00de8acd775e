// Files for agents (issue 16) against real trees and a real daemon: exact edits, content
// search (grep), watching, archives and extraction, quotas.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <mutex>
#include <thread>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::read_file;
using execd::test::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

httplib::Result post_json(const DaemonProcess& d, const std::string& path, const json& body) {
  return d.client()->Post(path.c_str(), body.dump(), "application/json");
}

std::string url_encode(const std::string& s) {
  std::string out;
  static const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- edit

TEST_CASE("edit: one match is replaced atomically with mode kept and a unified diff") {
  TempDir dir;
  DaemonProcess d;
  const auto f = dir.write("src/a.py", "def f():\n    return 1\n\ndef g():\n    return 2\n");
  REQUIRE(chmod(f.c_str(), 0754) == 0);
  auto r = post_json(d, "/files/edit", {{"path", f.string()}, {"old", "    return 1\n"}, {"new", "    return 10\n"}});
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 200);
  auto body = json::parse(r->body);
  CHECK(body["replacements"] == 1);
  CHECK(body["path"] == f.string());
  CHECK(body["diff"] == "--- a/" + f.string() + "\n+++ b/" + f.string() +
                            "\n@@ -1,5 +1,5 @@\n def f():\n-    return 1\n+    return 10\n \n def g():\n     return 2\n");
  CHECK(read_file(f) == "def f():\n    return 10\n\ndef g():\n    return 2\n");
  struct stat st {};
  REQUIRE(stat(f.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0754);
  for (const auto& e : fs::directory_iterator(f.parent_path())) CHECK(e.path().filename() == "a.py");  // no temp left
}

TEST_CASE("edit: zero and several matches are 409 naming the count; the file is untouched") {
  TempDir dir;
  DaemonProcess d;
  const auto f = dir.write("a.txt", "x = 1\ny = 2\nx = 1\n");
  check_error(post_json(d, "/files/edit", {{"path", f.string()}, {"old", "z = 3"}, {"new", "q"}}), 409, "CONFLICT", "not found");
  check_error(post_json(d, "/files/edit", {{"path", f.string()}, {"old", "x = 1"}, {"new", "x = 5"}}), 409, "CONFLICT",
              "occurs 2 times");
  check_error(post_json(d, "/files/edit", {{"path", f.string()}, {"old", "x = 1"}, {"new", "x = 5"}}), 409, "CONFLICT",
              "lines 1, 3");
  CHECK(read_file(f) == "x = 1\ny = 2\nx = 1\n");
  auto r = post_json(d, "/files/edit", {{"path", f.string()}, {"old", "x = 1"}, {"new", "x = 5"}, {"expected_replacements", 2}});
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(read_file(f) == "x = 5\ny = 2\nx = 5\n");
}

TEST_CASE("edit: several edits in one request apply in order, all or nothing") {
  TempDir dir;
  DaemonProcess d;
  const auto f = dir.write("a.txt", "alpha\nbeta\ngamma\n");
  json edits = json::array({{{"old", "alpha"}, {"new", "ALPHA"}}, {{"old", "gamma"}, {"new", "GAMMA"}}});
  auto r = post_json(d, "/files/edit", {{"path", f.string()}, {"edits", edits}});
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(json::parse(r->body)["replacements"] == 2);
  CHECK(read_file(f) == "ALPHA\nbeta\nGAMMA\n");
  edits = json::array({{{"old", "beta"}, {"new", "BETA"}}, {{"old", "delta"}, {"new", "DELTA"}}});
  check_error(post_json(d, "/files/edit", {{"path", f.string()}, {"edits", edits}}), 409, "CONFLICT", "edit 2 of 2");
  CHECK(read_file(f) == "ALPHA\nbeta\nGAMMA\n");
}

TEST_CASE("edit: a CRLF file takes LF edits and keeps CRLF") {
  TempDir dir;
  DaemonProcess d;
  const auto f = dir.write("win.txt", "one\r\ntwo\r\nthree\r\n");
  auto r = post_json(d, "/files/edit", {{"path", f.string()}, {"old", "one\ntwo\n"}, {"new", "one\n2\n"}});
  REQUIRE(r);
  INFO(r->body);
  CHECK(r->status == 200);
  CHECK(read_file(f) == "one\r\n2\r\nthree\r\n");
}

TEST_CASE("edit: bad requests and missing files") {
  TempDir dir;
  DaemonProcess d;
  check_error(post_json(d, "/files/edit", {{"old", "a"}, {"new", "b"}}), 400, "INVALID_REQUEST_BODY", "path");
  check_error(post_json(d, "/files/edit", {{"path", dir.str() + "/nope"}, {"old", "a"}, {"new", "b"}}), 404, "FILE_NOT_FOUND", "nope");
  const auto f = dir.write("a.txt", "a");
  check_error(post_json(d, "/files/edit", {{"path", f.string()}, {"old", "a"}}), 400, "INVALID_REQUEST_BODY", "'new'");
  check_error(post_json(d, "/files/edit", {{"path", f.string()}, {"old", ""}, {"new", "b"}}), 400, "INVALID_REQUEST_BODY", "empty");
  check_error(post_json(d, "/files/edit", {{"path", dir.str()}, {"old", "a"}, {"new", "b"}}), 400, "INVALID_REQUEST_BODY", "");
  fs::create_symlink(f, dir.path() / "link");
  check_error(post_json(d, "/files/edit", {{"path", (dir.path() / "link").string()}, {"old", "a"}, {"new", "b"}}), 400,
              "INVALID_REQUEST_BODY", "symlink");
  CHECK(read_file(f) == "a");
}

TEST_CASE("edit: a file changed between the agent's read and its edit; readers never see a partial file") {
  TempDir dir;
  DaemonProcess d;
  // The agent read v1; someone else changed the line the edit targets: 409, their change kept.
  const auto f = dir.write("a.txt", "keep = 1\ntarget = old\n");
  dir.write("a.txt", "keep = 1\ntarget = theirs\n");
  check_error(post_json(d, "/files/edit", {{"path", f.string()}, {"old", "target = old"}, {"new", "target = mine"}}), 409,
              "CONFLICT", "not found");
  CHECK(read_file(f) == "keep = 1\ntarget = theirs\n");
  // Someone changed another line: the edit applies to the current text, their change kept.
  dir.write("a.txt", "keep = 2\ntarget = theirs\n");
  auto r = post_json(d, "/files/edit", {{"path", f.string()}, {"old", "target = theirs"}, {"new", "target = mine"}});
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(read_file(f) == "keep = 2\ntarget = mine\n");

  // A reader polling the file while it is edited over and over sees only whole versions.
  const std::string big(4 << 20, 'x');
  const auto g = dir.write("big.txt", "A" + big);
  std::atomic<bool> stop{false};
  std::atomic<int> partial{0};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    while (!stop) {
      const std::string s = read_file(g);
      if (s.size() != big.size() + 1) ++partial;
      ++reads;
    }
  });
  for (int i = 0; i < 20; ++i) {
    const std::string from(1, static_cast<char>('A' + i));
    const std::string to(1, static_cast<char>('A' + i + 1));
    auto e = post_json(d, "/files/edit", {{"path", g.string()}, {"old", from + "x"}, {"new", to + "x"}});
    REQUIRE(e);
    REQUIRE(e->status == 200);
  }
  stop = true;
  reader.join();
  CHECK(reads > 0);
  CHECK(partial == 0);
  CHECK(read_file(g) == "U" + big);
}

// ---------------------------------------------------------------- grep

namespace {

json grep_json(const DaemonProcess& d, const std::string& query) {
  auto r = d.client()->Get(("/files/grep?format=json&" + query).c_str());
  REQUIRE(r);
  INFO(query << " -> " << r->body);
  REQUIRE(r->status == 200);
  return json::parse(r->body);
}

std::vector<std::string> hits(const json& body, const std::string& root) {
  std::vector<std::string> out;
  for (const auto& m : body["matches"]) {
    out.push_back(m["path"].get<std::string>().substr(root.size() + 1) + ":" + std::to_string(m["line"].get<int>()) + ":" +
                  m["text"].get<std::string>());
  }
  return out;
}

}  // namespace

TEST_CASE("grep: regex, fixed strings, case folding, glob, columns") {
  TempDir dir;
  DaemonProcess d;
  dir.write("a.py", "import os\ndef main():\n    return os.getcwd()\n");
  dir.write("sub/b.txt", "Main street\nno match here\nmain()\n");
  dir.write("sub/c.py", "x = a.b\nx = axb\n");
  const std::string root = dir.str();
  const std::string p = "path=" + url_encode(root);

  auto r = grep_json(d, p + "&pattern=" + url_encode("^def \\w+\\(\\)"));
  CHECK(hits(r, root) == std::vector<std::string>{"a.py:2:def main():"});
  CHECK(r["matches"][0]["column"] == 1);
  CHECK(r["summary"]["matches"] == 1);
  CHECK(r["summary"]["files_searched"] == 3);
  CHECK(r["summary"]["truncated"] == false);

  // Regex: '.' matches any byte; fixed: only the dot.
  CHECK(hits(grep_json(d, p + "&pattern=a.b"), root) == std::vector<std::string>{"sub/c.py:1:x = a.b", "sub/c.py:2:x = axb"});
  CHECK(hits(grep_json(d, p + "&pattern=a.b&fixed=true"), root) == std::vector<std::string>{"sub/c.py:1:x = a.b"});

  CHECK(hits(grep_json(d, p + "&pattern=main"), root) == std::vector<std::string>{"a.py:2:def main():", "sub/b.txt:3:main()"});
  CHECK(hits(grep_json(d, p + "&pattern=main&ignore_case=true"), root) ==
        std::vector<std::string>{"a.py:2:def main():", "sub/b.txt:1:Main street", "sub/b.txt:3:main()"});
  CHECK(hits(grep_json(d, p + "&pattern=main&glob=" + url_encode("*.txt")), root) == std::vector<std::string>{"sub/b.txt:3:main()"});
  auto col = grep_json(d, p + "&pattern=getcwd");
  CHECK(col["matches"][0]["column"] == 15);
  // One file as the path.
  CHECK(grep_json(d, "path=" + url_encode(root + "/sub/b.txt") + "&pattern=street")["matches"].size() == 1);
}

TEST_CASE("grep: context lines, CRLF, long files read in several blocks") {
  TempDir dir;
  DaemonProcess d;
  dir.write("ctx.txt", "l1\nl2\nl3\nHIT\nl5\nl6\nl7\n");
  dir.write("crlf.txt", "a\r\nHIT\r\nb\r\n");
  // 3 MiB of lines with matches at known lines, spanning the 1 MiB read blocks.
  std::string big;
  for (int i = 1; i <= 300000; ++i) big += (i % 100000 == 0 ? "needle " : "hay ") + std::to_string(i) + "\n";
  dir.write("big/big.txt", big);
  const std::string root = dir.str();
  auto r = grep_json(d, "path=" + url_encode(root + "/ctx.txt") + "&pattern=HIT&context=2");
  REQUIRE(r["matches"].size() == 1);
  CHECK(r["matches"][0]["line"] == 4);
  CHECK(r["matches"][0]["before"] == json::array({"l2", "l3"}));
  CHECK(r["matches"][0]["after"] == json::array({"l5", "l6"}));
  // The line's \r is not part of the text reported.
  auto c = grep_json(d, "path=" + url_encode(root + "/crlf.txt") + "&pattern=" + url_encode("^HIT") + "&context=1");
  REQUIRE(c["matches"].size() == 1);
  CHECK(c["matches"][0]["text"] == "HIT");
  CHECK(c["matches"][0]["before"] == json::array({"a"}));
  auto b = grep_json(d, "path=" + url_encode(root + "/big") + "&pattern=needle&context=1");
  CHECK(hits(b, root) == std::vector<std::string>{"big/big.txt:100000:needle 100000", "big/big.txt:200000:needle 200000",
                                                   "big/big.txt:300000:needle 300000"});
  CHECK(b["matches"][1]["before"] == json::array({"hay 199999"}));
  CHECK(b["matches"][1]["after"] == json::array({"hay 200001"}));
  CHECK(b["summary"]["bytes_searched"] == big.size());
}

TEST_CASE("grep: binary files skipped, .gitignore honoured when asked, symlinks never followed") {
  TempDir dir;
  DaemonProcess d;
  dir.write("text.txt", "secret\n");
  dir.write("bin.dat", std::string("secret\0\1\2", 10));
  dir.write(".gitignore", "*.log\nbuild/\n!keep.log\n");
  dir.write("app.log", "secret\n");
  dir.write("keep.log", "secret\n");
  dir.write("build/out.txt", "secret\n");
  dir.write("src/.gitignore", "gen_*\n");
  dir.write("src/gen_x.txt", "secret\n");
  dir.write("src/real.txt", "secret\n");
  dir.write(".git/config", "secret\n");
  // A symlink loop and a symlink out of the tree: neither is followed.
  fs::create_directory_symlink(dir.path(), dir.path() / "src" / "loop");
  TempDir outside;
  outside.write("o.txt", "secret\n");
  fs::create_directory_symlink(outside.path(), dir.path() / "out");
  fs::create_symlink(outside.path() / "o.txt", dir.path() / "olink.txt");
  const std::string root = dir.str();
  auto all = grep_json(d, "path=" + url_encode(root) + "&pattern=secret");
  std::vector<std::string> want = {".git/config:1:secret", "app.log:1:secret",     "build/out.txt:1:secret", "keep.log:1:secret",
                                   "src/gen_x.txt:1:secret", "src/real.txt:1:secret", "text.txt:1:secret"};
  CHECK(hits(all, root) == want);
  CHECK(all["summary"]["files_binary"] == 1);
  auto ign = grep_json(d, "path=" + url_encode(root) + "&pattern=secret&gitignore=true");
  want = {"keep.log:1:secret", "src/real.txt:1:secret", "text.txt:1:secret"};
  CHECK(hits(ign, root) == want);
}

TEST_CASE("grep: searching inside a repository applies the .gitignore files above the search root, as git does") {
  TempDir dir;
  DaemonProcess d;
  dir.write(".git/HEAD", "ref: refs/heads/main\n");
  dir.write(".gitignore", "*.log\nsrc/gen/\n");
  dir.write("src/.gitignore", "tmp_*\n");
  dir.write("src/pkg/a.txt", "secret\n");
  dir.write("src/pkg/b.log", "secret\n");        // the top's *.log
  dir.write("src/pkg/tmp_c.txt", "secret\n");    // src/.gitignore's tmp_*
  dir.write("src/gen/d.txt", "secret\n");        // anchored src/gen/ at the top
  const std::string root = dir.str();
  auto pkg = grep_json(d, "path=" + url_encode(root + "/src/pkg") + "&pattern=secret&gitignore=true");
  CHECK(hits(pkg, root + "/src/pkg") == std::vector<std::string>{"a.txt:1:secret"});
  // The top's anchored `src/gen/` applies to a search of src...
  auto src = grep_json(d, "path=" + url_encode(root + "/src") + "&pattern=secret&gitignore=true");
  CHECK(hits(src, root + "/src") == std::vector<std::string>{"pkg/a.txt:1:secret"});
  // ...but a path asked for by name is searched, as ripgrep does.
  auto gen = grep_json(d, "path=" + url_encode(root + "/src/gen") + "&pattern=secret&gitignore=true");
  CHECK(gen["matches"].size() == 1);
  // Without gitignore=true nothing is skipped; outside a repository parents do not apply.
  CHECK(grep_json(d, "path=" + url_encode(root + "/src/pkg") + "&pattern=secret")["matches"].size() == 3);
  TempDir plain;
  plain.write(".gitignore", "*.log\n");
  plain.write("sub/x.log", "secret\n");
  CHECK(grep_json(d, "path=" + url_encode(plain.str() + "/sub") + "&pattern=secret&gitignore=true")["matches"].size() == 1);
  // A glob that does not compile is a 400 naming it, not a search that silently finds nothing.
  check_error(d.client()->Get(("/files/grep?pattern=x&glob=" + std::string(5000, 'a') + "&path=" + url_encode(root)).c_str()), 400,
              "INVALID_REQUEST_BODY", "glob");
}

TEST_CASE("grep: a pathological pattern runs in linear time; bounds cut with a flag") {
  TempDir dir;
  DaemonProcess d;
  // (a*)*b against a long run of a's: exponential for backtracking engines.
  dir.write("aaa.txt", std::string(100000, 'a') + "\n");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = grep_json(d, "path=" + url_encode(dir.str()) + "&pattern=" + url_encode("(a*)*(a*)*(a*)*b"));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  CHECK(r["matches"].empty());

  std::string many;
  for (int i = 0; i < 50; ++i) many += "x\n";
  dir.write("many.txt", many);
  auto cut = grep_json(d, "path=" + url_encode(dir.str() + "/many.txt") + "&pattern=x&max_results=7");
  CHECK(cut["matches"].size() == 7);
  CHECK(cut["summary"]["truncated"] == true);
  CHECK(cut["summary"]["truncated_by"] == "max_results");
  auto per_file = grep_json(d, "path=" + url_encode(dir.str() + "/many.txt") + "&pattern=x&max_bytes_per_file=10");
  CHECK(per_file["matches"].size() == 5);
  CHECK(per_file["summary"]["truncated_by"] == "max_bytes_per_file");
}

TEST_CASE("grep: bad requests are 4xx JSON; SSE streams matches then a summary") {
  TempDir dir;
  DaemonProcess d;
  dir.write("a.txt", "one\ntwo\none\n");
  const std::string p = "path=" + url_encode(dir.str());
  check_error(d.client()->Get(("/files/grep?" + p + "&pattern=" + url_encode("(unclosed")).c_str()), 400, "INVALID_REQUEST_BODY", "bad pattern");
  check_error(d.client()->Get("/files/grep?pattern=x"), 400, "MISSING_QUERY", "path");
  check_error(d.client()->Get(("/files/grep?" + p).c_str()), 400, "MISSING_QUERY", "pattern");
  check_error(d.client()->Get(("/files/grep?path=" + url_encode(dir.str() + "/nope") + "&pattern=x").c_str()), 404, "FILE_NOT_FOUND", "nope");
  check_error(d.client()->Get(("/files/grep?" + p + "&pattern=x&context=999").c_str()), 400, "INVALID_REQUEST_BODY", "context");
  execd::test::SseRequest req;
  req.path = "/files/grep?" + p + "&pattern=one";
  auto s = execd::test::sse_request(d.port(), req);
  CHECK(s.status == 200);
  CHECK(s.ended);
  REQUIRE(s.events.size() == 3);
  CHECK(s.events[0].type() == "match");
  CHECK(s.events[0].json["line"] == 1);
  CHECK(s.events[1].json["line"] == 3);
  CHECK(s.events[2].type() == "summary");
  CHECK(s.events[2].json["matches"] == 2);
}

namespace {

size_t thread_count(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("Threads:")) return std::stoul(line.substr(8));
  }
  return 0;
}

}  // namespace

TEST_CASE("grep: many files come in walk order, the same as SSE and JSON; a client that leaves stops the workers") {
  TempDir dir;
  DaemonProcess d;
  std::vector<std::string> expected;  // walk order: entries by byte order of name
  for (const char* sub : {"B", "a", "a0"}) {
    for (const char* f : {"Z.txt", "b.txt", "c"}) {
      for (int n = 0; n < 40; ++n) {
        const std::string rel = std::string(sub) + "/" + std::to_string(n) + f;
        dir.write(rel, "x\nneedle " + rel + "\n");
      }
    }
  }
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (e.is_regular_file()) expected.push_back(e.path().string().substr(dir.str().size() + 1) + ":2:needle " + e.path().string().substr(dir.str().size() + 1));
  }
  std::sort(expected.begin(), expected.end());  // '/' sorts before every byte of these names: path order is walk order
  const std::string q = "path=" + url_encode(dir.str()) + "&pattern=needle&max_results=1000";
  CHECK(hits(grep_json(d, q), dir.str()) == expected);
  execd::test::SseRequest req;
  req.path = "/files/grep?" + q;
  auto s = execd::test::sse_request(d.port(), req);
  REQUIRE(s.ended);
  std::vector<std::string> streamed;
  for (const auto& e : s.events) {
    if (e.type() == "match") streamed.push_back(e.json["path"].get<std::string>().substr(dir.str().size() + 1) + ":2:" + e.json["text"].get<std::string>());
  }
  CHECK(streamed == expected);

  // A big answer, read a little, then the client hangs up.
  TempDir big;
  const std::string line = "needle " + std::string(200, 'y') + "\n";
  std::string text;
  for (int n = 0; n < 300; ++n) text += line;
  for (int f = 0; f < 400; ++f) big.write("d" + std::to_string(f % 7) + "/f" + std::to_string(f), text);
  const size_t threads_before = thread_count(d.pid());
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(d.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string get = "GET /files/grep?path=" + url_encode(big.str()) + "&pattern=needle&max_results=100000 HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(::write(fd, get.data(), get.size()) == static_cast<ssize_t>(get.size()));
  char buf[4096];
  size_t got = 0;
  while (got < 64 * 1024) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    REQUIRE(n > 0);
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  // The search notices at its next write, stops, and its worker threads end.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (thread_count(d.pid()) > threads_before && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(thread_count(d.pid()) <= threads_before);
  CHECK(hits(grep_json(d, q), dir.str()) == expected);
}

TEST_CASE("grep: --files-root confines the search") {
  TempDir root;
  TempDir outside;
  root.write("in.txt", "hello\n");
  outside.write("out.txt", "hello\n");
  DaemonProcess d({"--files-root", root.str()});
  check_error(d.client()->Get(("/files/grep?path=" + url_encode(outside.str()) + "&pattern=hello").c_str()), 403, "FORBIDDEN", "");
  auto r = grep_json(d, "path=" + url_encode(root.str()) + "&pattern=hello");
  CHECK(r["matches"].size() == 1);
}

// ---------------------------------------------------------------- watch

namespace {

/// Reads a watch stream on a thread, collecting events. The state is shared with the
/// thread, which is detached when the reader goes: it ends when the daemon does.
struct WatchReader {
  struct Shared {
    std::mutex mu;
    std::vector<execd::test::SseEvent> events;
    execd::test::SseResponse response;
    std::atomic<bool> ready{false};
    std::atomic<bool> done{false};
    std::string stop_suffix;  // disconnect after an event whose path ends so
  };
  std::shared_ptr<Shared> s = std::make_shared<Shared>();
  std::thread thread;

  WatchReader(int port, const std::string& query, const std::string& last_id = "", const std::string& stop_suffix = "") {
    s->stop_suffix = stop_suffix;
    thread = std::thread([s = s, port, query, last_id] {
      execd::test::SseRequest req;
      req.path = "/files/watch?" + query;
      if (!last_id.empty()) req.headers.emplace("Last-Event-ID", last_id);
      req.timeout = std::chrono::seconds(20);
      req.on_event = [s](const execd::test::SseEvent& e) {
        std::lock_guard lock(s->mu);
        s->events.push_back(e);
        if (e.type() == "watch") s->ready = true;
        const std::string p = e.json.value("path", "");
        return s->stop_suffix.empty() || p.size() < s->stop_suffix.size() ||
               p.compare(p.size() - s->stop_suffix.size(), s->stop_suffix.size(), s->stop_suffix) != 0;
      };
      auto r = execd::test::sse_request(port, req);
      std::lock_guard lock(s->mu);
      s->response = std::move(r);
      s->ready = true;
      s->done = true;
    });
  }
  ~WatchReader() {
    if (thread.joinable()) thread.detach();
  }
  bool wait_ready() {
    for (int i = 0; i < 200 && !s->ready; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    return s->ready;
  }
  bool wait_done(int ms = 5000) {
    for (int i = 0; i < ms / 20 && !s->done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return s->done;
  }
  /// Waits until an event of `type` for a path ending in `suffix` arrived.
  bool wait_for(const std::string& type, const std::string& suffix, int ms = 5000) {
    for (int i = 0; i < ms / 20; ++i) {
      {
        std::lock_guard lock(s->mu);
        for (const auto& e : s->events) {
          const std::string p = e.json.value("path", "");
          if (e.type() == type && p.size() >= suffix.size() && p.compare(p.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  std::vector<execd::test::SseEvent> events() {
    std::lock_guard lock(s->mu);
    return s->events;
  }
  std::vector<std::string> summary() {
    std::vector<std::string> out;
    for (const auto& e : events()) out.push_back(e.type() + " " + e.json.value("path", ""));
    return out;
  }
};

}  // namespace

TEST_CASE("watch: sees create, modify, rename and delete made by a command running at the same time") {
  TempDir dir;
  fs::create_directories(dir.path() / "sub");
  DaemonProcess d;
  WatchReader w(d.port(), "path=" + url_encode(dir.str()) + "&recursive=true");
  REQUIRE(w.wait_ready());
  const std::string script = "cd " + dir.str() +
                             " && printf hello > sub/a.txt && sleep 0.3 && printf more >> sub/a.txt && sleep 0.3 && "
                             "mv sub/a.txt sub/b.txt && sleep 0.3 && mkdir -p new/deep && printf x > new/deep/c.txt && "
                             "sleep 0.3 && rm sub/b.txt";
  execd::test::SseRequest cmd;
  cmd.method = "POST";
  cmd.path = "/command";
  cmd.body = json{{"command", script}}.dump();
  auto c = execd::test::sse_request(d.port(), cmd);
  CHECK(c.status == 200);
  CHECK(w.wait_for("deleted", "/sub/b.txt"));
  CHECK(w.wait_for("created", "/new/deep/c.txt"));
  INFO(json(w.summary()).dump());
  CHECK(w.wait_for("created", "/sub/a.txt"));
  CHECK(w.wait_for("modified", "/sub/a.txt"));
  CHECK(w.wait_for("moved_to", "/sub/b.txt"));
  for (const auto& e : w.events()) {
    if (e.type() == "created" && e.json["path"] == dir.str() + "/sub/a.txt") {
      CHECK(e.json["kind"] == "file");
    }
    if (e.type() == "moved_to") CHECK(e.json["from"] == dir.str() + "/sub/a.txt");
  }
}

TEST_CASE("watch: bursts are coalesced; Last-Event-ID resumes; a deleted directory ends the stream") {
  TempDir parent;
  const auto dir = parent.path() / "watched";
  fs::create_directories(dir);
  DaemonProcess d;
  std::string last_id;
  {
    WatchReader w(d.port(), "path=" + url_encode(dir.string()), "", "/stop_reading");
    REQUIRE(w.wait_ready());
    {
      std::ofstream f(dir / "burst.txt");
      for (int i = 0; i < 2000; ++i) {
        f << "line " << i << "\n";
        f.flush();
      }
    }
    REQUIRE(w.wait_for("created", "/burst.txt"));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::ofstream(dir / "stop_reading") << "x";
    REQUIRE(w.wait_done());
    size_t about_burst = 0;
    for (const auto& e : w.events()) about_burst += e.json.value("path", "") == (dir / "burst.txt").string();
    CHECK(about_burst >= 1);
    CHECK(about_burst <= 4);  // 2000 writes: a handful of events, not thousands
    last_id = w.events().back().id;
  }
  // While nobody listens, the watch lives on (linger) and keeps events for the resume.
  std::ofstream(dir / "while_away.txt") << "x";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  WatchReader again(d.port(), "path=" + url_encode(dir.string()), last_id);
  CHECK(again.wait_for("created", "/while_away.txt"));
  for (const auto& e : again.events()) {
    CHECK(e.type() != "watch");  // resumed, not restarted
    CHECK(e.json.value("path", "").find("burst") == std::string::npos);
  }
  fs::remove_all(dir);
  CHECK(again.wait_for("watch_end", ""));
  REQUIRE(again.wait_done());
  CHECK(again.s->response.ended);
  CHECK(again.events().back().json["reason"] == "deleted");
}

TEST_CASE("watch: limits and bad requests") {
  TempDir dir;
  fs::create_directories(dir.path() / "a");
  fs::create_directories(dir.path() / "b");
  DaemonProcess d({"--max-watches", "1", "--max-watched-dirs", "2"});
  check_error(d.client()->Get("/files/watch"), 400, "MISSING_QUERY", "path");
  check_error(d.client()->Get(("/files/watch?path=" + url_encode(dir.str() + "/nope")).c_str()), 404, "FILE_NOT_FOUND", "nope");
  const auto f = dir.write("file.txt", "x");
  check_error(d.client()->Get(("/files/watch?path=" + url_encode(f.string())).c_str()), 400, "INVALID_REQUEST_BODY", "not a directory");
  WatchReader w(d.port(), "path=" + url_encode(dir.str()));
  REQUIRE(w.wait_ready());
  REQUIRE_FALSE(w.events().empty());
  CHECK(w.events()[0].json["watched_dirs"] == 2);
  check_error(d.client()->Get(("/files/watch?path=" + url_encode(dir.str() + "/a")).c_str()), 503, "UNAVAILABLE", "--max-watches");
}

// ---------------------------------------------------------------- archives

namespace {

std::string mode_of(const fs::path& p) {
  struct stat st {};
  if (lstat(p.c_str(), &st) != 0) return "missing";
  char b[16];
  snprintf(b, sizeof b, "%o", st.st_mode & 07777);
  return b;
}

/// Relative path -> "type mode bytes-or-target" for every entry below `root`.
std::map<std::string, std::string> tree_of(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const std::string rel = fs::relative(e.path(), root).string();
    if (e.is_symlink()) out[rel] = "link " + fs::read_symlink(e.path()).string();
    else if (e.is_directory()) out[rel] = "dir " + mode_of(e.path());
    else out[rel] = "file " + mode_of(e.path()) + " " + read_file(e.path());
  }
  return out;
}

httplib::Result extract(const DaemonProcess& d, const std::string& dest, const std::string& archive) {
  return d.client()->Post(("/files/extract?path=" + url_encode(dest)).c_str(), archive, "application/octet-stream");
}

/// Runs a python3 snippet that writes an archive to `out` (its first argument).
std::string make_archive(const TempDir& dir, const std::string& name, const std::string& python) {
  const auto script = dir.write(name + ".py", python);
  const auto out = dir.path() / name;
  execd::test::shell_output("python3 " + script.string() + " " + out.string());
  return read_file(out);
}

}  // namespace

TEST_CASE("archive: tar.gz and zip round trips are byte-exact with modes and symlinks") {
  TempDir src;
  TempDir work;
  DaemonProcess d;
  src.write("readme.txt", "hello\n");
  std::string bin(300000, '\0');
  for (size_t i = 0; i < bin.size(); ++i) bin[i] = static_cast<char>((i * 7919) >> 3);
  src.write("data/blob.bin", bin);
  src.write("data/empty", "");
  const auto script = src.write("bin/run.sh", "#!/bin/sh\necho hi\n");
  REQUIRE(chmod(script.c_str(), 0755) == 0);
  const auto secret = src.write("secret.txt", "s");
  REQUIRE(chmod(secret.c_str(), 0600) == 0);
  fs::create_directories(src.path() / "empty_dir");
  fs::create_symlink("../readme.txt", src.path() / "data" / "link");
  const auto want = tree_of(src.path());
  for (const std::string format : {"tar.gz", "zip", "tar"}) {
    CAPTURE(format);
    auto a = d.client()->Get(("/files/archive?format=" + format + "&path=" + url_encode(src.str())).c_str());
    REQUIRE(a);
    REQUIRE(a->status == 200);
    CHECK(a->get_header_value("Content-Disposition").find(src.path().filename().string()) != std::string::npos);
    const std::string dest = work.str() + "/out-" + format;
    auto x = extract(d, dest, a->body);
    REQUIRE(x);
    INFO(x->body);
    REQUIRE(x->status == 200);
    CHECK(json::parse(x->body)["files"] == 5);
    CHECK(tree_of(dest) == want);
  }
  // The system's tar reads what we wrote.
  auto a = d.client()->Get(("/files/archive?format=tar.gz&path=" + url_encode(src.str())).c_str());
  const auto tgz = work.write("x.tar.gz", a->body);
  CHECK(execd::test::shell_output("tar -tzf " + tgz.string() + " | sort | tr '\\n' ' '") ==
        "bin/ bin/run.sh data/ data/blob.bin data/empty data/link empty_dir/ readme.txt secret.txt ");
}

TEST_CASE("archive: zip slip, absolute paths and links leading out are refused; nothing is written") {
  TempDir work;
  DaemonProcess d;
  const std::string dest = work.str() + "/dest";
  const std::string evil = work.str() + "/evil.txt";
  struct Case {
    std::string name, python, needle;
  };
  const std::vector<Case> cases = {
      {"dotdot.zip", "import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w')\nz.writestr('ok.txt','fine')\nz.writestr('../evil.txt','pwned')\nz.close()\n", "leading out"},
      {"dotdot.tar", "import tarfile,sys,io\nt=tarfile.open(sys.argv[1],'w')\nfor n in ['ok.txt','a/../../evil.txt']:\n  i=tarfile.TarInfo(n); d=b'pwned'; i.size=len(d); t.addfile(i, io.BytesIO(d))\nt.close()\n", "leading out"},
      {"abs.tar.gz", "import tarfile,sys,io\nt=tarfile.open(sys.argv[1],'w:gz')\ni=tarfile.TarInfo('" + evil + "'); d=b'pwned'; i.size=len(d); t.addfile(i, io.BytesIO(d))\nt.close()\n", "absolute"},
      {"symlink.tar", "import tarfile,sys,io\nt=tarfile.open(sys.argv[1],'w')\ni=tarfile.TarInfo('link'); i.type=tarfile.SYMTYPE; i.linkname='" + work.str() + "'; t.addfile(i)\ni=tarfile.TarInfo('link/evil.txt'); d=b'pwned'; i.size=len(d); t.addfile(i, io.BytesIO(d))\nt.close()\n", "symlink"},
      {"relsymlink.tar", "import tarfile,sys,io\nt=tarfile.open(sys.argv[1],'w')\ni=tarfile.TarInfo('sub/link'); i.type=tarfile.SYMTYPE; i.linkname='../..'; t.addfile(i)\ni=tarfile.TarInfo('sub/link/evil.txt'); d=b'pwned'; i.size=len(d); t.addfile(i, io.BytesIO(d))\nt.close()\n", "symlink"},
      {"hardlink.tar", "import tarfile,sys,io\nt=tarfile.open(sys.argv[1],'w')\ni=tarfile.TarInfo('h'); i.type=tarfile.LNKTYPE; i.linkname='../evil.txt'; t.addfile(i)\nt.close()\n", "hardlink"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const std::string archive = make_archive(work, c.name, c.python);
    REQUIRE_FALSE(archive.empty());
    check_error(extract(d, dest, archive), 403, "FORBIDDEN", c.needle);
    CHECK_FALSE(fs::exists(evil));
    CHECK((!fs::exists(dest) || fs::is_empty(dest)));
  }
  check_error(extract(d, dest, "this is not an archive at all"), 400, "INVALID_REQUEST_BODY", "archive");
}

TEST_CASE("archive: a zip bomb and too many entries are 413 before anything is written") {
  TempDir work;
  DaemonProcess d({"--max-extract-bytes", "16MiB", "--max-extract-entries", "20"});
  const std::string dest = work.str() + "/dest";
  const std::string bomb = make_archive(work, "bomb.zip",
                                        "import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED)\n"
                                        "z.writestr('small.txt','x')\nz.writestr('zeros.bin', b'\\0'*(64<<20))\nz.close()\n");
  CHECK(bomb.size() < 1 << 20);
  check_error(extract(d, dest, bomb), 413, "TOO_LARGE", "expands to more than");
  CHECK((!fs::exists(dest) || fs::is_empty(dest)));
  const std::string gz = make_archive(work, "bomb.tar.gz",
                                      "import tarfile,sys,io\nt=tarfile.open(sys.argv[1],'w:gz')\n"
                                      "i=tarfile.TarInfo('zeros'); i.size=64<<20; t.addfile(i, io.BytesIO(b'\\0'*(64<<20)))\nt.close()\n");
  check_error(extract(d, dest, gz), 413, "TOO_LARGE", "expands to more than");
  const std::string many = make_archive(work, "many.tar",
                                        "import tarfile,sys,io\nt=tarfile.open(sys.argv[1],'w')\nfor k in range(50):\n"
                                        "  i=tarfile.TarInfo('f%d'%k); i.size=1; t.addfile(i, io.BytesIO(b'x'))\nt.close()\n");
  check_error(extract(d, dest, many), 413, "TOO_LARGE", "more than 20 entries");
  CHECK((!fs::exists(dest) || fs::is_empty(dest)));
}

TEST_CASE("archive: a large tree streams with flat memory") {
  TempDir src;
  DaemonProcess d;
  // A 512 MiB sparse file reads as zeros at memory speed: the stream, not the disk, is measured.
  {
    std::ofstream f(src.path() / "big.bin");
  }
  fs::resize_file(src.path() / "big.bin", 512ull << 20);
  const long before = d.rss_kib();
  uint64_t got = 0;
  long peak = before;
  auto r = d.client()->Get(("/files/archive?format=tar&path=" + url_encode(src.str())).c_str(),
                           [&](const char*, size_t n) {
                             got += n;
                             if ((got & ((32u << 20) - 1)) < n) peak = std::max(peak, d.rss_kib());
                             return true;
                           });
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(got >= (512ull << 20));
  CHECK(peak - before < 32 * 1024);  // KiB: the archive is never held in memory
}

// ---------------------------------------------------------------- quota

TEST_CASE("quota: edits and extracts past --disk-quota are 507 naming quota and usage; old files intact") {
  TempDir root;
  const auto f = root.write("a.txt", std::string(6000, 'a') + "\nEND\n");
  DaemonProcess d({"--files-root", root.str(), "--disk-quota", "10000"});
  auto u = d.client()->Get("/files/usage");
  REQUIRE(u);
  REQUIRE(u->status == 200);
  CHECK(json::parse(u->body)["used"] == 6005);
  CHECK(json::parse(u->body)["quota"] == 10000);
  // Growing the file by 5000 bytes would pass the quota.
  check_error(post_json(d, "/files/edit", {{"path", f.string()}, {"old", "END"}, {"new", std::string(5000, 'e')}}), 507,
              "INSUFFICIENT_STORAGE", "quota");
  CHECK(read_file(f) == std::string(6000, 'a') + "\nEND\n");
  auto ok = post_json(d, "/files/edit", {{"path", f.string()}, {"old", "END"}, {"new", std::string(1000, 'e')}});
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(json::parse(d.client()->Get("/files/usage")->body)["used"] == 6005 + 997);
  TempDir work;
  const std::string zip = make_archive(work, "big.zip", "import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w')\nz.writestr('x.bin', b'x'*8000)\nz.close()\n");
  check_error(extract(d, root.str() + "/out", zip), 507, "INSUFFICIENT_STORAGE", "in use");
  CHECK_FALSE(fs::exists(root.path() / "out" / "x.bin"));
}

TEST_CASE("quota: uploads, tus, replace and removals are counted; writes past it are 507 and leave nothing") {
  TempDir root;
  DaemonProcess d({"--files-root", root.str(), "--disk-quota", "100000"});
  auto used = [&] { return json::parse(d.client()->Get("/files/usage")->body)["used"].get<uint64_t>(); };
  auto upload = [&](const std::string& path, const std::string& content) {
    httplib::MultipartFormDataItems items{{"metadata", json{{"path", path}}.dump(), "metadata", "application/json"},
                                          {"file", content, "blob", "application/octet-stream"}};
    return d.client()->Post("/files/upload", items);
  };
  const std::string a = root.str() + "/a.bin";
  const std::string b = root.str() + "/sub/b.bin";
  auto r = upload(a, std::string(60000, 'a'));
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(used() == 60000);
  // A second 60,000 bytes would pass 100,000: refused, nothing left behind, usage unchanged.
  check_error(upload(b, std::string(60000, 'b')), 507, "INSUFFICIENT_STORAGE", "quota");
  CHECK_FALSE(fs::exists(b));
  CHECK(used() == 60000);
  // Rewriting the file at the same size needs no room: its own bytes are freed by the rename.
  r = upload(a, std::string(10000, 'A') + std::string(50000, 'B'));
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(used() == 60000);
  // Replace shrinks it: credited.
  r = d.client()->Post("/files/replace", json{{a, {{"old", std::string(10000, 'A')}, {"new", "x"}}}}.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(used() == 60000 - 9999);
  // Removing a file and a tree credits their bytes.
  REQUIRE(upload(b, std::string(30000, 'b'))->status == 200);
  CHECK(used() == 50001 + 30000);
  CHECK(d.client()->Delete(("/files?path=" + a).c_str())->status == 200);
  CHECK(used() == 30000);
  CHECK(d.client()->Delete(("/directories?path=" + root.str() + "/sub").c_str())->status == 200);
  CHECK(used() == 0);
  // A resumable upload is charged as its bytes arrive: one that announces 150,000 bytes
  // fails when they pass the quota, and its reservation is returned.
  httplib::Headers tus{{"Tus-Resumable", "1.0.0"}, {"Upload-Length", "150000"},
                       {"Upload-Metadata", "path " + execd::test::base64(root.str() + "/big.bin")}};
  auto created = d.client()->Post("/files/uploads", tus, "", "");
  REQUIRE(created);
  REQUIRE(created->status == 201);
  const std::string location = created->get_header_value("Location");
  auto patched = d.client()->Patch(location.c_str(), {{"Tus-Resumable", "1.0.0"}, {"Upload-Offset", "0"}},
                                   std::string(150000, 't'), "application/offset+octet-stream");
  REQUIRE(patched);
  CHECK(patched->status == 507);
  d.client()->Delete(location.c_str(), {{"Tus-Resumable", "1.0.0"}});
  CHECK_FALSE(fs::exists(root.path() / "big.bin"));
  CHECK(used() == 0);
  // And the quota still admits what fits.
  CHECK(upload(a, std::string(90000, 'z'))->status == 200);
  CHECK(used() == 90000);
}
