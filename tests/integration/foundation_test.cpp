// The daemon as a user meets it: flags, /ping, auth, errors, /metrics, /metrics/watch,
// Last-Event-ID, many open streams, and a clean SIGTERM.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::shell_output;
using execd::test::sse_request;
using execd::test::SseRequest;
using nlohmann::json;

using execd::test::connect_loopback;

TEST_CASE("--help prints the flags and bad flags exit non-zero with one line") {
  const std::string bin = std::getenv("EXECD_BIN");
  const auto help = shell_output(bin + " --help; echo rc=$?");
  CHECK(help.find("--access-token") != std::string::npos);
  CHECK(help.find("rc=0") != std::string::npos);
  const auto bad_port = shell_output(bin + " --port 99999 2>&1; echo rc=$?");
  CHECK(bad_port.find("--port") != std::string::npos);
  CHECK(bad_port.find("rc=2") != std::string::npos);
  const auto unknown = shell_output(bin + " --no-such-flag 2>&1; echo rc=$?");
  CHECK(unknown.find("unknown flag") != std::string::npos);
  CHECK(unknown.find("rc=2") != std::string::npos);
  // One line, not a usage dump.
  CHECK(std::count(unknown.begin(), unknown.end(), '\n') == 2);
}

TEST_CASE("ping answers 200 with an empty body") {
  DaemonProcess d;
  auto c = d.client();
  auto r = c->Get("/ping");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.empty());
}

TEST_CASE("unknown route is a JSON 404 and a wrong method a JSON 405") {
  DaemonProcess d;
  auto c = d.client();
  check_error(c->Get("/no/such/route"), 404, "NOT_FOUND", "no route for GET /no/such/route");
  auto r = c->Post("/ping", "{}", "application/json");
  check_error(r, 405, "METHOD_NOT_ALLOWED", "method POST is not allowed on /ping");
  CHECK(r->get_header_value("Allow").find("GET") != std::string::npos);
  check_error(c->Delete("/metrics"), 405, "METHOD_NOT_ALLOWED", "method DELETE is not allowed");
}

TEST_CASE("with an access token every route answers 401 unless the header matches") {
  DaemonProcess d({"--access-token", "s3cret"});
  auto c = d.client();
  check_error(c->Get("/ping"), 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
  check_error(c->Get("/metrics"), 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
  check_error(c->Get("/no/such/route"), 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
  check_error(c->Get("/ping", {{"X-EXECD-ACCESS-TOKEN", "s3cre"}}), 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
  check_error(c->Get("/ping", {{"X-EXECD-ACCESS-TOKEN", "s3cret!"}}), 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
  check_error(c->Get("/ping", {{"X-EXECD-ACCESS-TOKEN", ""}}), 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
  auto ok = c->Get("/ping", {{"X-EXECD-ACCESS-TOKEN", "s3cret"}});
  REQUIRE(ok);
  CHECK(ok->status == 200);
  auto watch = sse_request(d.port(), SseRequest{"GET", "/metrics/watch", "", {}, std::chrono::seconds(5), nullptr});
  CHECK(watch.status == 401);
}

TEST_CASE("the token can come from EXECD_ACCESS_TOKEN") {
  DaemonProcess d({}, {"EXECD_ACCESS_TOKEN=fromenv"});
  auto c = d.client();
  check_error(c->Get("/ping"), 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
  auto ok = c->Get("/ping", {{"X-EXECD-ACCESS-TOKEN", "fromenv"}});
  REQUIRE(ok);
  CHECK(ok->status == 200);
}

TEST_CASE("GET /metrics answers at once with sane host figures") {
  DaemonProcess d;
  auto c = d.client();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = c->Get("/metrics");
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(elapsed < std::chrono::milliseconds(900));  // the Go daemon blocks a full second
  const auto m = json::parse(r->body);
  CHECK(m["cpu_count"].get<double>() > 0);
  CHECK(m["cpu_used_pct"].get<double>() >= 0);
  CHECK(m["cpu_used_pct"].get<double>() <= 100);
  CHECK(m["mem_total_mib"].get<double>() > 0);
  CHECK(m["mem_used_mib"].get<double>() >= 0);
  CHECK(m["mem_used_mib"].get<double>() <= m["mem_total_mib"].get<double>());
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  CHECK(std::llabs(now_ms - m["timestamp"].get<int64_t>()) < 5000);
}

TEST_CASE("/metrics/watch streams one event a second with ids, and resumes after Last-Event-ID") {
  DaemonProcess d;
  std::vector<std::chrono::steady_clock::time_point> arrivals;
  SseRequest req;
  req.path = "/metrics/watch";
  req.timeout = std::chrono::seconds(5);
  req.on_event = [&](const execd::test::SseEvent&) {
    arrivals.push_back(std::chrono::steady_clock::now());
    return arrivals.size() < 3;
  };
  auto r = sse_request(d.port(), req);
  CHECK(r.status == 200);
  CHECK(r.headers.find("Content-Type")->second.find("text/event-stream") == 0);
  REQUIRE(r.events.size() == 3);
  for (const auto& e : r.events) {
    CHECK(e.json.contains("cpu_used_pct"));
    CHECK(e.json.contains("mem_used_mib"));
    CHECK_FALSE(e.id.empty());
  }
  CHECK(std::stoull(r.events[1].id) > std::stoull(r.events[0].id));
  CHECK(std::stoull(r.events[2].id) > std::stoull(r.events[1].id));
  const auto gap = arrivals[2] - arrivals[1];
  CHECK(gap > std::chrono::milliseconds(700));
  CHECK(gap < std::chrono::milliseconds(1500));

  // A reconnecting client names the last event it saw and gets only newer ones.
  const std::string last = r.events.back().id;
  SseRequest again;
  again.path = "/metrics/watch";
  again.headers = {{"Last-Event-ID", last}};
  again.timeout = std::chrono::seconds(5);
  again.on_event = [](const execd::test::SseEvent&) { return false; };
  auto r2 = sse_request(d.port(), again);
  REQUIRE(r2.events.size() == 1);
  CHECK(std::stoull(r2.events[0].id) > std::stoull(last));
}

TEST_CASE("1,000 open /metrics/watch streams are served at once while /ping still answers") {
  DaemonProcess d;
  constexpr int kStreams = 1000;
  std::vector<int> fds;
  const std::string request = "GET /metrics/watch HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (int i = 0; i < kStreams; ++i) {
    const int fd = connect_loopback(d.port());
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
    fds.push_back(fd);
  }
  // Every stream gets its first event within a few seconds.
  std::vector<bool> got(kStreams, false);
  int n_got = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (n_got < kStreams && std::chrono::steady_clock::now() < deadline) {
    std::vector<pollfd> pfds;
    for (int i = 0; i < kStreams; ++i) pfds.push_back({fds[i], POLLIN, 0});
    if (poll(pfds.data(), pfds.size(), 1000) <= 0) continue;
    for (int i = 0; i < kStreams; ++i) {
      if ((pfds[i].revents & POLLIN) == 0) continue;
      char buf[8192];
      const ssize_t n = read(fds[i], buf, sizeof buf);
      if (n > 0 && !got[i] && std::string(buf, n).find("data: {") != std::string::npos) {
        got[i] = true;
        ++n_got;
      }
    }
  }
  CHECK(n_got == kStreams);
  // /ping still answers promptly with all of them open.
  auto c = d.client();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = c->Get("/ping");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  MESSAGE("daemon RSS with " << kStreams << " streams: " << d.rss_kib() / 1024 << " MiB");
  for (int fd : fds) close(fd);
  // The daemon notices the departed clients at its next writes and frees their threads.
  const auto threads = [&] {
    const auto status = execd::test::read_file("/proc/" + std::to_string(d.pid()) + "/status");
    const auto pos = status.find("Threads:");
    return pos == std::string::npos ? -1 : std::atoi(status.c_str() + pos + 8);
  };
  const auto freed_by = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (threads() > 100 && std::chrono::steady_clock::now() < freed_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  CHECK(threads() <= 100);
  auto r2 = c->Get("/ping");
  REQUIRE(r2);
  CHECK(r2->status == 200);
}

TEST_CASE("headers trickled byte by byte are cut off at --http-read-timeout; a slow body is not") {
  DaemonProcess d({"--http-read-timeout", "1s"});
  const int fd = connect_loopback(d.port());
  REQUIRE(fd >= 0);
  const std::string head = "GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(200, 'a');
  const auto t0 = std::chrono::steady_clock::now();
  std::string answer;
  bool closed = false;
  for (char c : head) {  // one byte every 50 ms: each well within the timeout, the whole 10 s
    if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) break;  // reset by the daemon's close
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) == 1) break;
  }
  // The daemon answers 400 and closes the connection (reading on would only wait again).
  timeval five{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &five, sizeof five);
  char reply[4096];
  ssize_t n;
  while ((n = recv(fd, reply, sizeof reply, 0)) > 0) answer.append(reply, static_cast<size_t>(n));
  closed = n == 0 || errno == ECONNRESET;  // not EAGAIN: that would be the 5 s timeout
  const auto took = std::chrono::steady_clock::now() - t0;
  close(fd);
  CHECK(closed);
  CHECK((answer.empty() || answer.rfind("HTTP/1.1 400", 0) == 0));
  CHECK(took < std::chrono::seconds(3));

  // An upload whose body pauses 0.6 s twice (1.2 s, past the 1 s) still lands whole.
  execd::test::TempDir dir;
  const std::string target = (dir.path() / "slow.txt").string();
  const std::string part1 = "--B\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"metadata\"\r\n\r\n{\"path\":\"" +
                            target + "\"}\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nhello ";
  const std::string part2 = "slow ";
  const std::string part3 = "world\r\n--B--\r\n";
  const int up = connect_loopback(d.port());
  REQUIRE(up >= 0);
  const std::string request = "POST /files/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                              "Content-Length: " + std::to_string(part1.size() + part2.size() + part3.size()) + "\r\n\r\n" + part1;
  REQUIRE(send(up, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
  for (const std::string* piece : {&part2, &part3}) {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    REQUIRE(send(up, piece->data(), piece->size(), MSG_NOSIGNAL) == static_cast<ssize_t>(piece->size()));
  }
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = recv(up, buf, sizeof buf, 0)) > 0;) response.append(buf, static_cast<size_t>(n));
  close(up);
  CHECK(response.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(execd::test::read_file(target) == "hello slow world");
}

TEST_CASE("SIGTERM ends open streams and exits 0 within the grace period") {
  DaemonProcess d({"--graceful-shutdown-timeout", "3s"});
  std::atomic<bool> stream_ended{false};
  std::thread watcher([&] {
    SseRequest req;
    req.path = "/metrics/watch";
    req.timeout = std::chrono::seconds(10);
    auto r = sse_request(d.port(), req);
    stream_ended = r.ended || !r.error.empty();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto t0 = std::chrono::steady_clock::now();
  const int status = d.stop(SIGTERM, std::chrono::seconds(5));
  const auto took = std::chrono::steady_clock::now() - t0;
  watcher.join();
  REQUIRE(status != -1);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(took < std::chrono::seconds(4));
  CHECK(stream_ended.load());
}

TEST_CASE("SIGTERM right after start is never lost: the daemon exits 0 at once, cleanly, every time") {
  // The signal can land before the server's accept loop has begun; it once went unheard
  // and the daemon left only at the grace period's end, skipping its clean-up.
  for (int i = 0; i < 20; ++i) {
    DaemonProcess d({"--graceful-shutdown-timeout", "3s"});
    const auto t0 = std::chrono::steady_clock::now();
    const int status = d.stop(SIGTERM, std::chrono::seconds(10));
    const auto took = std::chrono::steady_clock::now() - t0;
    INFO("start ", i, ", the daemon's log: ", d.log());
    REQUIRE(status != -1);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(took < std::chrono::seconds(2));
    CHECK(d.log().find("exiting anyway") == std::string::npos);
  }
}
