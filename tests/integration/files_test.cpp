// The files and directories API against real files: CRUD, streamed multipart upload
// (atomic: an aborted or refused upload leaves the old file intact), ranged and line
// downloads, the files-root jail with traversal and symlink escapes, and bad input.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::read_file;
using execd::test::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {


httplib::Result upload(const DaemonProcess& d, const std::vector<std::pair<json, std::string>>& files) {
  httplib::MultipartFormDataItems items;
  for (const auto& [meta, content] : files) {
    items.push_back({"metadata", meta.dump(), "metadata", "application/json"});
    items.push_back({"file", content, "blob", "application/octet-stream"});
  }
  return d.client()->Post("/files/upload", items);
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

// Sends `head` as a request and closes the connection without the rest.
void send_and_hang_up(int port, const std::string& head) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(write(fd, head.data(), head.size()) == static_cast<ssize_t>(head.size()));
  usleep(200 * 1000);
  close(fd);
  usleep(200 * 1000);
}

std::vector<std::string> leftovers(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find(".execd-") != std::string::npos) out.push_back(e.path());
  }
  return out;
}

}  // namespace

TEST_CASE("info, move, permissions, replace, delete") {
  TempDir dir;
  DaemonProcess d;
  const auto a = dir.write("a.txt", "hello hello world");
  auto r = d.client()->Get(("/files/info?path=" + a.string() + "&path=" + dir.str()).c_str());
  REQUIRE(r->status == 200);
  auto info = json::parse(r->body);
  CHECK(info[a.string()]["type"] == "file");
  CHECK(info[a.string()]["size"] == 17);
  CHECK(info[a.string()]["mode"] == 644);
  CHECK(info[dir.str()]["type"] == "directory");
  CHECK(info[a.string()]["modified_at"].get<std::string>().find('T') != std::string::npos);

  r = d.client()->Post("/files/replace?verbose=true", json{{a.string(), {{"old", "hello"}, {"new", "bye"}}}}.dump(), "application/json");
  REQUIRE(r->status == 200);
  CHECK(json::parse(r->body)[a.string()]["replacedCount"] == 2);
  CHECK(read_file(a) == "bye bye world");
  CHECK((fs::status(a).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read));

  r = d.client()->Post("/files/permissions", json{{a.string(), {{"mode", 600}}}}.dump(), "application/json");
  CHECK(r->status == 200);
  struct stat st {};
  stat(a.c_str(), &st);
  CHECK((st.st_mode & 0777) == 0600);
  check_error(d.client()->Post("/files/permissions", json{{a.string(), {{"mode", 689}}}}.dump(), "application/json"), 400,
              "INVALID_REQUEST_BODY", "not octal");

  const auto dest = dir.path() / "deep" / "er" / "b.txt";
  r = d.client()->Post("/files/mv", json::array({{{"src", a.string()}, {"dest", dest.string()}}}).dump(), "application/json");
  CHECK(r->status == 200);
  CHECK(read_file(dest) == "bye bye world");
  CHECK_FALSE(fs::exists(a));
  const auto other = dir.write("other.txt", "keep me");
  check_error(d.client()->Post("/files/mv", json::array({{{"src", dest.string()}, {"dest", other.string()}}}).dump(), "application/json"),
              409, "CONFLICT", other.string());
  CHECK(read_file(other) == "keep me");
  check_error(d.client()->Post("/files/mv", json::array({{{"src", a.string()}, {"dest", other.string()}}}).dump(), "application/json"),
              404, "FILE_NOT_FOUND", a.string());

  CHECK(d.client()->Delete(("/files?path=" + dest.string()).c_str())->status == 200);
  CHECK_FALSE(fs::exists(dest));
  CHECK(d.client()->Delete(("/files?path=" + dest.string()).c_str())->status == 200);  // missing is fine
  check_error(d.client()->Delete(("/files?path=" + dir.str()).c_str()), 400, "INVALID_REQUEST_BODY", "is a directory");
  check_error(d.client()->Get("/files/info?path=/no/such/file"), 404, "FILE_NOT_FOUND", "/no/such/file");
  check_error(d.client()->Delete("/files"), 400, "MISSING_QUERY", "path");
}

TEST_CASE("directories: mkdir -p with mode, list with depth (symlinks reported, not followed), search, rm -rf") {
  TempDir dir;
  DaemonProcess d;
  const auto made = dir.path() / "x" / "y";
  auto r = d.client()->Post("/directories", json{{made.string(), {{"mode", 755}}}, {(dir.path() / "p").string(), {{"mode", 700}}}}.dump(), "application/json");
  REQUIRE(r->status == 200);
  CHECK(fs::is_directory(made));
  struct stat st {};
  stat((dir.path() / "p").c_str(), &st);
  CHECK((st.st_mode & 0777) == 0700);
  dir.write("x/y/f1.txt", "1");
  dir.write("x/f2.log", "2");
  dir.write("x/.hidden.txt", "3");
  fs::create_directory_symlink("/etc", dir.path() / "x" / "etc-link");

  r = d.client()->Get(("/directories/list?path=" + (dir.path() / "x").string() + "&depth=1").c_str());
  std::vector<std::string> names;
  for (const auto& e : json::parse(r->body)) names.push_back(e["path"].get<std::string>().substr(dir.str().size()));
  CHECK(names == std::vector<std::string>{"/x/.hidden.txt", "/x/etc-link", "/x/f2.log", "/x/y"});
  r = d.client()->Get(("/directories/list?path=" + (dir.path() / "x").string() + "&depth=5").c_str());
  names.clear();
  for (const auto& e : json::parse(r->body)) {
    names.push_back(e["path"].get<std::string>().substr(dir.str().size()));
    if (names.back() == "/x/etc-link") CHECK(e["type"] == "symlink");
  }
  CHECK(names == std::vector<std::string>{"/x/.hidden.txt", "/x/etc-link", "/x/f2.log", "/x/y", "/x/y/f1.txt"});
  CHECK(json::parse(d.client()->Get(("/directories/list?path=" + dir.str() + "&depth=0").c_str())->body).empty());
  check_error(d.client()->Get(("/directories/list?path=" + (dir.path() / "x/f2.log").string()).c_str()), 400, "INVALID_REQUEST_BODY", "not a directory");
  check_error(d.client()->Get(("/directories/list?path=" + (dir.path() / "x/etc-link").string()).c_str()), 400, "INVALID_REQUEST_BODY", "symlink");
  check_error(d.client()->Get(("/directories/list?path=" + dir.str() + "&depth=-1").c_str()), 400, "INVALID_REQUEST_BODY", "depth");
  check_error(d.client()->Get("/directories/list?path=/no/such/dir"), 404, "FILE_NOT_FOUND", "/no/such/dir");

  r = d.client()->Get(("/files/search?path=" + dir.str() + "&pattern=*.{txt,log}").c_str());
  REQUIRE(r->status == 200);
  CHECK(json::parse(r->body).size() == 3);
  r = d.client()->Get(("/files/search?path=" + dir.str() + "&pattern=**").c_str());
  CHECK(json::parse(r->body).size() == 4);  // 3 files and the symlink; the link is not walked into
  check_error(d.client()->Get("/files/search?pattern=*"), 400, "MISSING_QUERY", "path");

  CHECK(d.client()->Delete(("/directories?path=" + (dir.path() / "x").string()).c_str())->status == 200);
  CHECK_FALSE(fs::exists(dir.path() / "x"));
  CHECK(fs::exists("/etc/hostname"));  // the symlink went, not what it pointed to
  CHECK(d.client()->Delete(("/directories?path=" + (dir.path() / "x").string()).c_str())->status == 200);
}

TEST_CASE("upload: several files per request, parents created, mode applied, metadata after its file") {
  TempDir dir;
  DaemonProcess d;
  const auto big = random_bytes(3 * 1024 * 1024 + 7, 1);
  auto r = upload(d, {{{{"path", (dir.path() / "n" / "one.bin").string()}, {"mode", 600}}, big},
                      {{{"path", (dir.path() / "two.txt").string()}}, "second"}});
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 200);
  CHECK(read_file(dir.path() / "n" / "one.bin") == big);
  CHECK(read_file(dir.path() / "two.txt") == "second");
  struct stat st {};
  stat((dir.path() / "n" / "one.bin").c_str(), &st);
  CHECK((st.st_mode & 0777) == 0600);
  // File part first, metadata after: spooled, then placed.
  httplib::MultipartFormDataItems items = {{"file", "spooled", "blob", ""},
                                           {"metadata", json{{"path", (dir.path() / "late.txt").string()}}.dump(), "metadata", ""}};
  r = d.client()->Post("/files/upload", items);
  REQUIRE(r->status == 200);
  CHECK(read_file(dir.path() / "late.txt") == "spooled");
  CHECK(leftovers(dir.path()).empty());
}

TEST_CASE("a failed upload leaves the old file byte-for-byte intact and nothing half-written") {
  TempDir dir;
  DaemonProcess d({"--max-upload-bytes", "1MiB"});
  const auto target = dir.write("keep.bin", "the original content");
  SUBCASE("the client hangs up halfway through the body") {
    const std::string body_start = "--BOUND\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"metadata\"\r\n\r\n" +
                                   json{{"path", target.string()}}.dump() +
                                   "\r\n--BOUND\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n" +
                                   std::string(200000, 'x');
    send_and_hang_up(d.port(), "POST /files/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=BOUND\r\n"
                               "Content-Length: 9000000\r\n\r\n" + body_start);
  }
  SUBCASE("the body ends without its closing boundary") {
    const std::string body = "--BOUND\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n" + json{{"path", target.string()}}.dump() +
                             "\r\n--BOUND\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\npartial";
    auto r = d.client()->Post("/files/upload", body, "multipart/form-data; boundary=BOUND");
    check_error(r, 400, "INVALID_FILE_CONTENT", "cut off");
  }
  SUBCASE("over --max-upload-bytes: 413 before the disk fills") {
    check_error(upload(d, {{{{"path", target.string()}}, std::string(2 * 1024 * 1024, 'y')}}), 413, "TOO_LARGE", "max-upload-bytes");
  }
  SUBCASE("a second pair fails validation: the first file is not written either") {
    const auto first = dir.path() / "first.txt";
    check_error(upload(d, {{{{"path", first.string()}}, "new"}, {{{"path", target.string()}, {"mode", 999}}, "x"}}), 400,
                "INVALID_FILE_METADATA", "999");
    CHECK_FALSE(fs::exists(first));
  }
  CHECK(read_file(target) == "the original content");
  CHECK(leftovers(dir.path()).empty());
  CHECK(d.client()->Get("/ping")->status == 200);
}

TEST_CASE("disk full is a 507 and the old file survives; permission denied is a 403") {
  TempDir dir;
  const auto small = dir.path() / "small";
  fs::create_directory(small);
  // A 1 MiB tmpfs is the disk that fills up (CI runs as root, as these tests need).
  if (std::system(("mount -t tmpfs -o size=1m tmpfs " + small.string()).c_str()) != 0) {
    FAIL("cannot mount a small tmpfs to fill (needs root)");
  }
  struct Unmount {
    std::string path;
    ~Unmount() { std::system(("umount " + path).c_str()); }
  } unmount{small.string()};
  const auto keep = small / "keep.txt";
  std::ofstream(keep) << "precious";
  DaemonProcess d;
  check_error(upload(d, {{{{"path", keep.string()}}, std::string(2 * 1024 * 1024, 'z')}}), 507, "INSUFFICIENT_STORAGE", keep.string());
  CHECK(read_file(keep) == "precious");
  CHECK(leftovers(small).empty());
  check_error(upload(d, {{{{"path", "/sys/kernel/execd-test"}}, "x"}}), 403, "PERMISSION_DENIED", "/sys/kernel/execd-test");
}

TEST_CASE("upload bad input names the problem") {
  TempDir dir;
  DaemonProcess d;
  check_error(d.client()->Post("/files/upload", "{}", "application/json"), 400, "INVALID_FILE", "multipart");
  check_error(upload(d, {{{{"mode", 644}}, "x"}}), 400, "INVALID_FILE_METADATA", "path");
  httplib::MultipartFormDataItems bad_json = {{"metadata", "{not json", "metadata", ""}, {"file", "x", "f", ""}};
  check_error(d.client()->Post("/files/upload", bad_json), 400, "INVALID_FILE_METADATA", "JSON");
  httplib::MultipartFormDataItems no_file = {{"metadata", json{{"path", (dir.path() / "a").string()}}.dump(), "metadata", ""}};
  check_error(d.client()->Post("/files/upload", no_file), 400, "INVALID_FILE_CONTENT", "file");
  httplib::MultipartFormDataItems two_files = {{"metadata", json{{"path", (dir.path() / "a").string()}}.dump(), "metadata", ""},
                                               {"file", "1", "f", ""}, {"file", "2", "f", ""}};
  check_error(d.client()->Post("/files/upload", two_files), 400, "INVALID_FILE", "1 metadata parts but 2 file parts");
  fs::create_directory(dir.path() / "adir");
  check_error(upload(d, {{{{"path", (dir.path() / "adir").string()}}, "x"}}), 400, "INVALID_REQUEST_BODY", "is a directory");
  CHECK(leftovers(dir.path()).empty());
}

TEST_CASE("download: whole file, ranges (closed, open, suffix, past the end, several), lines") {
  TempDir dir;
  DaemonProcess d;
  const auto data = random_bytes(100000, 2);
  const auto f = dir.write("data.bin", data);
  const std::string url = "/files/download?path=" + f.string();
  auto r = d.client()->Get(url.c_str());
  REQUIRE(r->status == 200);
  CHECK(r->body == data);
  CHECK(r->get_header_value("Content-Length") == "100000");
  CHECK(r->get_header_value("Content-Type") == "application/octet-stream");
  CHECK(r->get_header_value("Content-Disposition") == "attachment; filename=\"data.bin\"");
  auto ranged = [&](const std::string& range) { return d.client()->Get(url.c_str(), {{"Range", range}}); };
  r = ranged("bytes=0-9");
  CHECK(r->status == 206);
  CHECK(r->body == data.substr(0, 10));
  CHECK(r->get_header_value("Content-Range") == "bytes 0-9/100000");
  r = ranged("bytes=99990-");
  CHECK(r->status == 206);
  CHECK(r->body == data.substr(99990));
  r = ranged("bytes=-5");
  CHECK(r->body == data.substr(99995));
  CHECK(r->get_header_value("Content-Range") == "bytes 99995-99999/100000");
  r = ranged("bytes=-200000");  // longer than the file: all of it
  CHECK(r->body == data);
  r = ranged("bytes=99998-200000");  // end clamped
  CHECK(r->body == data.substr(99998));
  r = ranged("bytes=10-19, 30-39");  // the first range of a list
  CHECK(r->body == data.substr(10, 10));
  r = ranged("bytes=100000-");
  CHECK(r->status == 416);
  CHECK(r->get_header_value("Content-Range") == "bytes */100000");
  CHECK(json::parse(r->body)["code"] == "RANGE_NOT_SATISFIABLE");
  CHECK(ranged("bytes=abc")->status == 416);

  const auto lines = dir.write("lines.txt", "line1\nline2\r\nline3\nline4\nline5");
  const std::string lurl = "/files/download?path=" + lines.string();
  CHECK(d.client()->Get((lurl + "&offset=2&limit=2").c_str())->body == "line2\nline3");
  CHECK(d.client()->Get((lurl + "&offset=4").c_str())->body == "line4\nline5");
  CHECK(d.client()->Get((lurl + "&limit=2").c_str())->body == "line1\nline2");
  CHECK(d.client()->Get((lurl + "&offset=9").c_str())->body.empty());
  check_error(d.client()->Get((lurl + "&offset=0").c_str()), 400, "INVALID_REQUEST_BODY", "offset");
  check_error(d.client()->Get((lurl + "&limit=2").c_str(), {{"Range", "bytes=0-1"}}), 400, "INVALID_REQUEST_BODY", "Range");

  check_error(d.client()->Get("/files/download"), 400, "MISSING_QUERY", "path");
  check_error(d.client()->Get(("/files/download?path=" + dir.str()).c_str()), 400, "INVALID_REQUEST_BODY", "directory");
  check_error(d.client()->Get(("/files/download?path=" + dir.str() + "/nope").c_str()), 404, "FILE_NOT_FOUND", "nope");
}

TEST_CASE("--files-root confines every path: .., absolute paths and symlinks leading out are refused") {
  TempDir root;
  TempDir outside;
  const auto secret = outside.write("secret.txt", "do not read");
  root.write("in/ok.txt", "fine");
  fs::create_symlink(secret, root.path() / "in" / "leak");
  fs::create_directory_symlink(outside.path(), root.path() / "dirleak");
  fs::create_symlink(root.path() / "in" / "ok.txt", root.path() / "in" / "inner-link");
  DaemonProcess d({"--files-root", root.str()});
  auto get = [&](const std::string& p) { return d.client()->Get(("/files/download?path=" + p).c_str()); };
  CHECK(get(root.str() + "/in/ok.txt")->body == "fine");
  CHECK(get("in/../in/ok.txt")->status != 200);  // relative to the daemon's cwd, which is outside the root
  check_error(get(root.str() + "/../" + outside.path().filename().string() + "/secret.txt"), 403, "FORBIDDEN", "outside the files root");
  check_error(get(secret.string()), 403, "FORBIDDEN", "outside the files root");
  check_error(get(root.str() + "/in/leak"), 403, "FORBIDDEN", "escapes");
  check_error(get(root.str() + "/dirleak/secret.txt"), 403, "FORBIDDEN", "escapes");
  CHECK(get(root.str() + "/in/inner-link")->status == 200);
  check_error(upload(d, {{{{"path", root.str() + "/dirleak/new.txt"}}, "x"}}), 403, "FORBIDDEN", "escapes");
  CHECK_FALSE(fs::exists(outside.path() / "new.txt"));
  check_error(d.client()->Delete(("/files?path=" + root.str() + "/dirleak/secret.txt").c_str()), 403, "FORBIDDEN", "escapes");
  // The symlink itself lives inside the root: removing it is fine and leaves its target.
  CHECK(d.client()->Delete(("/directories?path=" + root.str() + "/dirleak/").c_str())->status == 200);
  CHECK(fs::exists(secret));
  check_error(d.client()->Post("/files/mv", json::array({{{"src", root.str() + "/in/ok.txt"}, {"dest", outside.str() + "/x"}}}).dump(), "application/json"),
              403, "FORBIDDEN", "outside");
  CHECK(read_file(secret) == "do not read");
}

TEST_CASE("--files-root: a symlink swapped in during requests never leads out") {
  TempDir root;
  TempDir outside;
  outside.write("f.txt", "secret");
  root.write("d/f.txt", "inside");
  fs::create_directory_symlink(outside.path(), root.path() / "l");
  DaemonProcess d({"--files-root", root.str()});
  // Another thread keeps moving a real directory and a symlink to `outside` in and out
  // of root/sw, so a check-then-open resolver would sooner or later follow the link.
  std::atomic<bool> stop{false};
  std::thread swapper([&] {
    const auto sw = root.path() / "sw";
    while (!stop) {
      for (const char* name : {"d", "l"}) {
        std::error_code ec;
        fs::rename(root.path() / name, sw, ec);
        std::this_thread::sleep_for(std::chrono::microseconds(500));
        fs::rename(sw, root.path() / name, ec);
      }
    }
  });
  int inside = 0;
  int refused = 0;
  int leaked = 0;
  auto c = d.client();
  for (int i = 0; i < 400; ++i) {
    auto r = c->Get(("/files/download?path=" + root.str() + "/sw/f.txt").c_str());
    REQUIRE(r);
    if (r->body == "secret") ++leaked;
    if (r->status == 200 && r->body == "inside") ++inside;
    if (r->status == 403) ++refused;
    CHECK((r->status == 200 || r->status == 403 || r->status == 404));
  }
  stop = true;
  swapper.join();
  CHECK(leaked == 0);
  // The race was real: the directory and the link were each in place some of the time.
  CHECK(inside > 0);
  CHECK(refused > 0);
}

TEST_CASE("a 200 MB upload and download stream through without growing the daemon") {
  TempDir dir;
  DaemonProcess d;
  const long before = d.rss_kib();
  const std::string content = random_bytes(200 * 1024 * 1024, 3);
  auto r = upload(d, {{{{"path", (dir.path() / "big.bin").string()}}, content}});
  REQUIRE(r->status == 200);
  const long after_upload = d.rss_kib();
  auto got = d.client()->Get(("/files/download?path=" + (dir.path() / "big.bin").string()).c_str());
  const long after_download = d.rss_kib();
  CHECK(got->body == content);
  INFO("rss KiB: before " << before << ", after upload " << after_upload << ", after download " << after_download);
  CHECK(after_upload - before < 16 * 1024);
  CHECK(after_download - before < 16 * 1024);
}

namespace {

httplib::Headers tus(std::initializer_list<std::pair<const std::string, std::string>> extra = {}) {
  httplib::Headers h = {{"Tus-Resumable", "1.0.0"}};
  for (const auto& [k, v] : extra) h.emplace(k, v);
  return h;
}

std::string create_upload(const DaemonProcess& d, const std::string& path, size_t length) {
  auto r = d.client()->Post("/files/uploads", tus({{"Upload-Length", std::to_string(length)}, {"Upload-Metadata", "path " + execd::test::base64(path)}}), "", "");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 201);
  CHECK(r->get_header_value("Tus-Resumable") == "1.0.0");
  CHECK_FALSE(r->get_header_value("Upload-Expires").empty());
  return r->get_header_value("Location");
}

uint64_t offset_of(const DaemonProcess& d, const std::string& location) {
  auto r = d.client()->Head(location.c_str(), tus());
  REQUIRE(r);
  REQUIRE(r->status == 200);
  return std::stoull(r->get_header_value("Upload-Offset"));
}

}  // namespace

TEST_CASE("tus: a resumed upload after a broken connection assembles the exact bytes") {
  TempDir dir;
  DaemonProcess d;
  const auto target = dir.write("resumed.bin", "old content stays until the end");
  const std::string data = random_bytes(3 * 1024 * 1024 + 123, 4);
  auto options = d.client()->Options("/files/uploads");
  REQUIRE(options);
  CHECK(options->status == 204);
  CHECK(options->get_header_value("Tus-Extension").find("creation") != std::string::npos);

  const std::string loc = create_upload(d, target.string(), data.size());
  // First chunk, then a PATCH whose connection breaks after part of its body.
  auto r = d.client()->Patch(loc.c_str(), tus({{"Upload-Offset", "0"}}), data.substr(0, 1000000), "application/offset+octet-stream");
  REQUIRE(r->status == 204);
  CHECK(r->get_header_value("Upload-Offset") == "1000000");
  send_and_hang_up(d.port(), "PATCH " + loc + " HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 1000000\r\n"
                             "Content-Type: application/offset+octet-stream\r\nContent-Length: 2000000\r\n\r\n" +
                             data.substr(1000000, 500000));
  const uint64_t resumed_at = offset_of(d, loc);
  CHECK(resumed_at > 1000000);
  CHECK(resumed_at <= 1500000);
  CHECK(read_file(target) == "old content stays until the end");
  // A wrong offset is a conflict, not a corruption.
  r = d.client()->Patch(loc.c_str(), tus({{"Upload-Offset", "5"}}), "zz", "application/offset+octet-stream");
  check_error(r, 409, "CONFLICT", "does not match");
  r = d.client()->Patch(loc.c_str(), tus({{"Upload-Offset", std::to_string(resumed_at)}}), data.substr(resumed_at),
                        "application/offset+octet-stream");
  REQUIRE(r->status == 204);
  CHECK(r->get_header_value("Upload-Offset") == std::to_string(data.size()));
  CHECK(std::hash<std::string>{}(read_file(target)) == std::hash<std::string>{}(data));
  CHECK(read_file(target) == data);
  CHECK(leftovers(dir.path()).empty());
}

TEST_CASE("tus: termination, expiry, and bad requests") {
  TempDir dir;
  DaemonProcess d({"--upload-expiry", "1s", "--max-upload-bytes", "10MiB"});
  std::string loc = create_upload(d, (dir.path() / "t.bin").string(), 100);
  d.client()->Patch(loc.c_str(), tus({{"Upload-Offset", "0"}}), "0123456789", "application/offset+octet-stream");
  CHECK(leftovers(dir.path()).size() == 1);
  auto del = d.client()->Delete(loc.c_str(), tus());
  CHECK(del->status == 204);
  CHECK(leftovers(dir.path()).empty());
  CHECK(d.client()->Head(loc.c_str(), tus())->status == 404);

  loc = create_upload(d, (dir.path() / "e.bin").string(), 100);
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  check_error(d.client()->Get(loc.c_str(), tus()), 404, "NOT_FOUND", "expired");
  CHECK(leftovers(dir.path()).empty());
  CHECK_FALSE(fs::exists(dir.path() / "e.bin"));

  check_error(d.client()->Post("/files/uploads", tus({{"Upload-Length", "99999999999"}, {"Upload-Metadata", "path " + execd::test::base64((dir.path() / "x").string())}}), "", ""),
              413, "TOO_LARGE", "max-upload-bytes");
  check_error(d.client()->Post("/files/uploads", tus({{"Upload-Length", "5"}}), "", ""), 400, "INVALID_REQUEST_BODY", "path");
  check_error(d.client()->Post("/files/uploads", httplib::Headers{{"Upload-Length", "5"}}, "", ""), 412, "INVALID_REQUEST_BODY", "Tus-Resumable");
  loc = create_upload(d, (dir.path() / "y.bin").string(), 4);
  check_error(d.client()->Patch(loc.c_str(), tus({{"Upload-Offset", "0"}}), "abc", "text/plain"), 415, "INVALID_REQUEST_BODY", "offset+octet-stream");
  check_error(d.client()->Patch(loc.c_str(), tus({{"Upload-Offset", "0"}}), "too long", "application/offset+octet-stream"), 413, "TOO_LARGE", "Upload-Length");
}
