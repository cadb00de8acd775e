// Docker sandboxes on the network (issue 12): one sandbox cannot reach another, nor the
// gateway's host, while its own execd works through the gateway. The proof needs docker's
// own firewall, so this test makes a network namespace of its own (unshare) and runs
// everything in it: a private dockerd WITH iptables, the gateway (the docker backend,
// listening on 0.0.0.0 there) and a TCP listener standing for "another service on the
// host". The host's interfaces, routes and iptables are never touched. Probes run inside
// a sandbox as commands sent through the gateway's proxy, with busybox's nc.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "integration/gateway_execd_bundle_dir.hpp"  // EXECD_BUNDLE_DIR: make_bundle.sh's layout of this build's execd
#include "integration/gateway_harness.hpp"
#include "support/daemon_process.hpp"
#include "support/private_dockerd.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::PrivateDockerd;
using execd::test::shell_output;
using execd::test::TempDir;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kApiKey = "network-key-12";
constexpr const char* kImage = "execd-net-busybox:latest";
constexpr int kExecdPort = 44772;

// unshare(CLONE_NEWNET) moves the calling thread, which starts every child of this test
// (dockerd, the gateway, ip) and opens every socket, into a fresh network namespace.
void enter_own_network_namespace() {
  static const bool entered = [] {
    REQUIRE_MESSAGE(::unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET): " << std::strerror(errno));
    const std::string up = shell_output("ip link set lo up 2>&1 && echo lo-up");
    REQUIRE_MESSAGE(up.find("lo-up") != std::string::npos, up);
    return true;
  }();
  (void)entered;
}

PrivateDockerd& dockerd() {
  enter_own_network_namespace();
  static PrivateDockerd d(PrivateDockerd::Options{.iptables = true, .runtimes = {}});
  static const bool imported = (d.import_busybox_image(kImage), true);
  (void)imported;
  return d;
}

/// "Another service on the host": a TCP socket on 0.0.0.0 of the test's namespace that
/// accepts and closes, counting whom it accepted.
class HostListener {
 public:
  HostListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~HostListener() { ::close(fd_); }
  HostListener(const HostListener&) = delete;
  HostListener& operator=(const HostListener&) = delete;

  [[nodiscard]] int port() const { return port_; }
  /// Peer addresses of the connections accepted since the last call.
  std::vector<std::string> accepted() {
    std::vector<std::string> peers;
    while (true) {
      sockaddr_in peer{};
      socklen_t len = sizeof peer;
      const int c = ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
      if (c < 0) break;
      char text[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof text);
      peers.emplace_back(text);
      ::close(c);
    }
    return peers;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

/// The docker backend's gateway in the test's namespace, on 0.0.0.0 (so its own port is
/// one of the host's a sandbox might try).
struct DockerGateway {
  TempDir dir;
  gateway_harness::Gateway gw;
  explicit DockerGateway(const std::string& firewall)
      : gw(dir.str(), kApiKey,
           {"--backend", "docker", "--docker-host", dockerd().host(), "--execd-bundle", EXECD_BUNDLE_DIR, "--host",
            "0.0.0.0", "--docker-host-firewall", firewall}) {}

  std::string create_running() {
    const std::string id = gw.create({{"image", {{"uri", kImage}}}, {"timeout", 600}})["id"];
    gw.wait_state(id, "Running", 90s);
    return id;
  }
  /// The sandbox's execd address as the gateway routes to it ("10.x.y.z").
  std::string address(const std::string& id) {
    auto r = gw.get("/v1/sandboxes/" + id + "/endpoints/" + std::to_string(kExecdPort));
    REQUIRE(r);
    REQUIRE_MESSAGE(r->status == 200, r->body);
    const std::string endpoint = json::parse(r->body)["endpoint"];
    const auto colon = endpoint.rfind(':');
    REQUIRE(colon != std::string::npos);
    CHECK(endpoint.substr(colon + 1) == std::to_string(kExecdPort));
    return endpoint.substr(0, colon);
  }
  /// A command's stdout lines, run by the sandbox's execd through the gateway's proxy.
  std::vector<std::string> run(const std::string& id, const std::string& command) {
    execd::test::SseRequest req;
    req.method = "POST";
    req.path = "/v1/sandboxes/" + id + "/proxy/" + std::to_string(kExecdPort) + "/command";
    req.body = json{{"command", command}}.dump();
    req.headers.emplace("OPEN-SANDBOX-API-KEY", kApiKey);
    req.timeout = 60s;
    const auto r = execd::test::sse_request(gw.port(), req);
    INFO(r.raw);
    REQUIRE(r.of_type("execution_complete").size() == 1);
    std::vector<std::string> lines;
    for (const auto& e : r.of_type("stdout")) lines.push_back(e.json.value("text", ""));
    return lines;
  }
};

/// From inside a sandbox: for each target "host:port" (the shell expands $gw, the
/// sandbox's default gateway: the host's address on its bridge), "target open" when a TCP
/// connection was made, else "target closed: <nc's reason>" (refused, or timed out when
/// dropped). A connected nc waits for the peer, so `timeout` ends it; connected still.
std::string probe_command(const std::vector<std::string>& targets) {
  std::string list;
  for (const auto& t : targets) list += " " + t;
  return "gw=$(ip route | awk '/^default/ {print $3}'); echo gw=$gw; for t in" + list +
         "; do err=$(timeout 6 nc -w 4 ${t%:*} ${t##*:} </dev/null 2>&1 >/dev/null); "
         "case \"$err\" in *\"can't connect\"*|*\"timed out\"*) echo \"$t closed: $err\";; *) echo \"$t open\";; esac; "
         "done";
}

/// "target" -> "open" / "closed: ..." from the probe's lines; "gw" -> the gateway address.
std::map<std::string, std::string> probe_results(const std::vector<std::string>& lines) {
  std::map<std::string, std::string> out;
  for (const auto& l : lines) {
    if (l.rfind("gw=", 0) == 0) {
      out["gw"] = l.substr(3);
      continue;
    }
    const auto space = l.find(' ');
    if (space != std::string::npos) out[l.substr(0, space)] = l.substr(space + 1);
  }
  return out;
}

std::string starts(const std::string& s, size_t n) { return s.substr(0, n); }

}  // namespace

TEST_CASE("docker sandboxes: without the host firewall a sandbox reaches the host's services (why the rule exists)") {
  // The control for the next case: the same probe, with only docker's own rules. (The
  // next case's rule stays in this namespace once made, so this one runs first.)
  DockerGateway g("off");
  REQUIRE(shell_output("iptables -S INPUT 2>&1").find("exd+") == std::string::npos);
  HostListener service;
  const std::string a = g.create_running();
  const auto r = probe_results(g.run(a, probe_command({"$gw:" + std::to_string(service.port())})));
  INFO("dockerd log: " << dockerd().log());
  REQUIRE(r.count("gw") == 1);
  const std::string target = r.at("gw") + ":" + std::to_string(service.port());
  CHECK_MESSAGE(r.count(target) == 1, "probe lines did not name " << target);
  if (r.count(target) == 1) CHECK(r.at(target) == "open");
  CHECK(service.accepted().size() == 1);
}

TEST_CASE("docker sandboxes: one cannot reach another or the gateway's host; its own execd works through the gateway") {
  DockerGateway g("on");
  HostListener service;
  const std::string a = g.create_running();
  const std::string b = g.create_running();
  const std::string a_ip = g.address(a);
  const std::string b_ip = g.address(b);
  REQUIRE(a_ip != b_ip);
  INFO("A " << a_ip << ", B " << b_ip);

  // The host routes between the bridges (forwarding on in this namespace) and reaches B
  // itself: what keeps A from B below is docker's isolation rules, not a missing route.
  CHECK(starts(shell_output("cat /proc/sys/net/ipv4/ip_forward"), 1) == "1");
  CHECK(shell_output("iptables -S DOCKER-ISOLATION-STAGE-2 2>&1").find("-j DROP") != std::string::npos);
  CHECK(shell_output("iptables -S INPUT 2>&1").find("-i exd+ -m conntrack --ctstate NEW -j REJECT") != std::string::npos);
  httplib::Client to_b(b_ip, kExecdPort);
  to_b.set_connection_timeout(5s);
  const auto ping_b = to_b.Get("/ping");
  REQUIRE(ping_b);
  CHECK(ping_b->status == 401);  // execd's answer without B's token: reached

  // B's own bridge address is the host's too.
  const std::string b_gateway = b_ip.substr(0, b_ip.rfind('.')) + ".1";
  const std::string svc = std::to_string(service.port());
  const std::string gw_port = std::to_string(g.gw.port());
  const std::vector<std::string> targets = {
      "127.0.0.1:" + std::to_string(kExecdPort),  // A's own execd: nc can connect (the probe works)
      b_ip + ":" + std::to_string(kExecdPort),     // sandbox B's execd
      "$gw:" + svc,                                // a service of the host, on A's bridge address
      "$gw:" + gw_port,                            // the gateway's own port there
      b_gateway + ":" + svc,                       // the same service on B's bridge address
  };
  const auto r = probe_results(g.run(a, probe_command(targets)));
  INFO("probe: " << json(r).dump());
  REQUIRE(r.count("gw") == 1);
  const std::string a_gateway = r.at("gw");
  CHECK(a_gateway == a_ip.substr(0, a_ip.rfind('.')) + ".1");
  auto result = [&](const std::string& target) { return r.count(target) == 1 ? r.at(target) : "(no line)"; };
  CHECK(result("127.0.0.1:" + std::to_string(kExecdPort)) == "open");
  // Docker's isolation rules drop traffic between bridge networks: a timeout.
  CHECK(result(b_ip + ":" + std::to_string(kExecdPort)) == "closed: nc: timed out");
  // The gateway's rule refuses new connections from sandbox bridges to the host.
  for (const auto& target : {a_gateway + ":" + svc, a_gateway + ":" + gw_port, b_gateway + ":" + svc}) {
    INFO(target);
    CHECK(starts(result(target), 6) == "closed");
    CHECK(result(target).find("Connection refused") != std::string::npos);
  }
  CHECK(service.accepted().empty());

  // And the other way round, from B to A.
  const auto rb = probe_results(g.run(b, probe_command({a_ip + ":" + std::to_string(kExecdPort)})));
  const std::string a_execd = a_ip + ":" + std::to_string(kExecdPort);
  CHECK((rb.count(a_execd) == 1 ? rb.at(a_execd) : "(no line)") == "closed: nc: timed out");

  // A's execd still answers through the gateway, a command in it included.
  const auto echoed = g.run(a, "echo via-gateway-$((6*7))");
  REQUIRE(echoed.size() == 1);
  CHECK(echoed[0] == "via-gateway-42");
}
