// The browser console (/ui): its files served from the binary, and the page itself driven
// in a real headless Chromium over the DevTools protocol (ui_driver.py) against the real
// build/execd with real kernels; the test asserts on what the page's DOM showed.
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <doctest/doctest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/temp_dir.hpp"

using namespace execd::test;

namespace {

constexpr const char* kToken = "ui-test-token-81b3";

std::string env_or_fail(const char* name) {
  const char* v = std::getenv(name);
  REQUIRE_MESSAGE(v != nullptr, name << " is not set (run through meson test)");
  return v;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs ui_driver.py against `d`'s /ui in `mode`; the JSON it printed. The driver fails
// (an "error" member) when chromium cannot start or a step does not happen in time.
nlohmann::json drive(const DaemonProcess& d, const std::string& mode, const std::string& files_dir,
                     const std::string& upload, const std::string& screenshot) {
  const std::string cmd = "timeout 300 /usr/bin/python3 " + env_or_fail("UI_TEST_DIR") + "/ui_driver.py http://127.0.0.1:" +
                          std::to_string(d.port()) + "/ui " + kToken + " " + files_dir + " " + upload + " " +
                          screenshot + " " + mode + " 2>&1";
  const std::string out = shell_output(cmd);
  INFO("driver printed: " << out);
  const auto newline = out.find_last_of('\n', out.size() >= 2 ? out.size() - 2 : 0);
  const std::string last = out.substr(newline == std::string::npos ? 0 : newline + 1);
  auto j = nlohmann::json::parse(last, nullptr, false);
  REQUIRE_MESSAGE(j.is_object(), "the driver printed no JSON");
  REQUIRE_MESSAGE(!j.contains("error"), "the driver failed: " << j["error"].get<std::string>());
  return j;
}

}  // namespace

TEST_CASE("ui: the page and its files come from memory without the token; the API still wants it") {
  DaemonProcess d({"--access-token", kToken});
  auto c = d.client();
  c->set_follow_location(false);

  auto r = c->Get("/ui");
  REQUIRE(r);
  CHECK(r->status == 302);
  CHECK(r->get_header_value("Location") == "ui/");  // relative: keeps a proxy's prefix

  r = c->Get("/ui/");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "text/html; charset=utf-8");
  CHECK(r->get_header_value("Cache-Control") == "no-cache");
  CHECK(r->body == read_file(env_or_fail("UI_TEST_DIR") + "/../../ui/index.html"));
  const std::string etag = r->get_header_value("ETag");
  CHECK(etag.size() == 18);
  CHECK(etag.front() == '"');

  auto again = c->Get("/ui/", {{"If-None-Match", etag}});
  REQUIRE(again);
  CHECK(again->status == 304);
  CHECK(again->body.empty());
  auto changed = c->Get("/ui/", {{"If-None-Match", "\"0000000000000000\""}});
  REQUIRE(changed);
  CHECK(changed->status == 200);

  // The vendored xterm.js, byte for byte, and the page's own script and styles.
  const std::string vendor = env_or_fail("UI_VENDOR_DIR");
  r = c->Get("/ui/vendor/xterm.js");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "text/javascript; charset=utf-8");
  CHECK(r->body == read_file(vendor + "/xterm/lib/xterm.js"));
  r = c->Get("/ui/vendor/xterm.css");
  REQUIRE(r);
  CHECK(r->get_header_value("Content-Type") == "text/css; charset=utf-8");
  CHECK(r->body == read_file(vendor + "/xterm/css/xterm.css"));
  r = c->Get("/ui/app.js");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.find("X-EXECD-ACCESS-TOKEN") != std::string::npos);
  CHECK(r->get_header_value("ETag") != etag);

  check_error(c->Get("/ui/nothing.js"), 404, "NOT_FOUND", "/ui/nothing.js");
  // Only the console's files are open: the API and other methods on /ui still want the token.
  check_error(c->Get("/ping"), 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
  check_error(c->Get("/uix"), 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
  check_error(c->Post("/ui/", "x", "text/plain"), 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
}

TEST_CASE("ui: --ui off, and auto on a non-loopback address, serve no console; on does") {
  {
    DaemonProcess d({"--ui", "off"});
    check_error(d.client()->Get("/ui/"), 404, "NOT_FOUND", "/ui/");
  }
  {
    DaemonProcess d({"--host", "0.0.0.0"});
    check_error(d.client()->Get("/ui/"), 404, "NOT_FOUND", "/ui/");
  }
  {
    DaemonProcess d({"--host", "0.0.0.0", "--ui", "on"});
    auto r = d.client()->Get("/ui/");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  const std::string bad = shell_output(env_or_fail("EXECD_BIN") + " --port 0 --ui maybe 2>&1; echo rc=$?");
  CHECK(bad.find("ui") != std::string::npos);
  CHECK(bad.find("on, off or auto") != std::string::npos);
  CHECK(bad.find("rc=0") == std::string::npos);
}

TEST_CASE("ui: headless Chromium runs cells (plot, traceback, interrupt, bash, JavaScript), lists, uploads and downloads files, charts metrics") {
  TempDir dir;
  dir.write("alpha.txt", "alpha\n");
  dir.write("sub/inner.txt", "inner\n");
  TempDir src;
  std::string payload(300000, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>((i * 2654435761u) >> 17);
  const std::string upload = src.write("upload.bin", payload).string();
  DaemonProcess d({"--access-token", kToken});

  const auto j = drive(d, "console", dir.str(), upload, env_or_fail("UI_SCREENSHOT_DIR") + "/ui-console.png");
  INFO(j.dump(2));
  CHECK(j["token_prompt"] == true);  // the daemon has a token: the page asked for it
  CHECK(j["stored_token"] == true);
  CHECK(j["status"].get<std::string>().find("connected to 127.0.0.1:" + std::to_string(d.port())) == 0);
  CHECK(j["cell0_result"] == "2");
  CHECK(j["cell0_count"].get<std::string>().rfind("[1] ", 0) == 0);  // execution count, then the time taken
  CHECK(j["cell0_count"].get<std::string>().find(" ms") != std::string::npos);
  CHECK(j["cell1_img_src"].get<std::string>().rfind("data:image/png;base64,iVBORw0KGgo", 0) == 0);
  CHECK(j["cell1_img_width"].get<int>() > 100);  // Chromium decoded a real PNG
  CHECK(j["cell2_stdout"] == "streamed out\n");
  CHECK(j["cell2_stderr"] == "to stderr\n");
  CHECK(j["cell2_traceback"].get<std::string>().find("ZeroDivisionError") != std::string::npos);
  CHECK(j["cell3_traceback"].get<std::string>().find("KeyboardInterrupt") != std::string::npos);
  CHECK(j["interrupt_seconds"].get<double>() < 20);  // not the cell's 60 s
  CHECK(j["bash_stdout"] == "42\n/tmp\n");  // one event per line, shown one per line
  CHECK(j["javascript_stdout"].get<std::string>().find("2,4,6") != std::string::npos);
  CHECK(j["files_listed"] == nlohmann::json::array({"sub/", "alpha.txt"}));
  CHECK(j["upload_status"] == "uploaded upload.bin");
  CHECK(j["files_after_upload"] == nlohmann::json::array({"sub/", "alpha.txt", "upload.bin"}));
  CHECK(read_file(dir.str() + "/upload.bin") == payload);
  CHECK(j["download_matches"] == true);
  CHECK(j["metrics_samples"].get<int>() >= 2);
  CHECK(j["metrics_text"].get<std::string>().find("CPU ") == 0);
  CHECK(j["screenshot_bytes"].get<int>() > 10000);
}

TEST_CASE("ui: typing echo hi into the terminal (xterm.js on /pty's WebSocket) shows hi") {
  TempDir dir;
  const std::string upload = dir.write("unused.txt", "x").string();
  DaemonProcess d({"--access-token", kToken});
  const auto j = drive(d, "terminal", dir.str(), upload, env_or_fail("UI_SCREENSHOT_DIR") + "/ui-terminal.png");
  INFO(j.dump(2));
  const auto& lines = j["terminal_lines"];
  REQUIRE(lines.is_array());
  bool typed = false;
  bool echoed = false;
  for (const auto& l : lines) {
    const std::string s = l.get<std::string>();
    typed = typed || s.find("echo hi") != std::string::npos;
    echoed = echoed || s == "hi";
  }
  CHECK(typed);
  CHECK(echoed);
}
