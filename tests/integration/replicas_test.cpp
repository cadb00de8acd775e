// Gateway replicas behind a real nginx (deploy/nginx/gateway.conf, rendered with this
// test's ports): three execd-gateways with their own tables over one process-backend
// engine (a shared --state-dir), consistent hashing on the sandbox id in nginx, and
// X-Gateway-Replica naming who served each answer.
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "gateway_harness.hpp"
#include "support/http_checks.hpp"

extern char** environ;

using execd::test::TempDir;
using gateway_harness::Gateway;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kKey = "replica-key-0123";
constexpr const char* kReplicaHeader = "X-Gateway-Replica";

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// deploy/nginx/gateway.conf with this test's replicas and port, inside a main config of
/// its own (prefix, pid, logs and temp paths in `dir`), run in the foreground.
class Nginx {
 public:
  Nginx(const std::string& dir, const std::vector<int>& replica_ports) : dir_(dir) {
    const char* src = std::getenv("EXECD_SOURCE_DIR");
    REQUIRE(src != nullptr);
    std::string conf = read_text(std::string(src) + "/deploy/nginx/gateway.conf");
    REQUIRE_FALSE(conf.empty());
    const auto begin = conf.find("# replicas begin");
    const auto end = conf.find("# replicas end");
    REQUIRE(begin != std::string::npos);
    REQUIRE(end != std::string::npos);
    std::string servers = "# replicas begin\n";
    for (const int p : replica_ports) {
      servers += "    server 127.0.0.1:" + std::to_string(p) + " max_fails=1 fail_timeout=10s;\n";
    }
    conf.replace(begin, end - begin, servers + "    ");
    port_ = execd::test::unused_loopback_port();
    const auto listen = conf.find("listen 8080;");
    REQUIRE(listen != std::string::npos);
    conf.replace(listen, std::string("listen 8080;").size(), "listen 127.0.0.1:" + std::to_string(port_) + ";");
    std::ofstream(dir + "/gateway.conf") << conf;
    std::ofstream(dir + "/nginx.conf") << (::geteuid() == 0 ? "user root;\n" : "") << "worker_processes 1;\n"
                                       << "pid " << dir << "/nginx.pid;\n"
                                       << "error_log " << dir << "/error.log warn;\n"
                                       << "events { worker_connections 1024; }\n"
                                       << "http {\n  access_log off;\n"
                                       << "  client_body_temp_path " << dir << "/body;\n  proxy_temp_path " << dir
                                       << "/proxy;\n"
                                       << "  fastcgi_temp_path " << dir << "/fcgi;\n  uwsgi_temp_path " << dir
                                       << "/uwsgi;\n  scgi_temp_path " << dir << "/scgi;\n"
                                       << "  include " << dir << "/gateway.conf;\n}\n";
    std::vector<std::string> args = {"/usr/sbin/nginx",   "-p", dir + "/",    "-c",
                                     dir + "/nginx.conf", "-g", "daemon off;"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, (dir + "/stdout.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, (dir + "/stderr.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    INFO("nginx (Debian's nginx-light: make test installs it) could not be started");
    REQUIRE(rc == 0);
    // Up when it answers on its port (a 401 from a replica is an answer).
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      httplib::Client c("127.0.0.1", port_);
      c.set_connection_timeout(1s);
      if (c.Get("/health")) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(50ms);
    }
    FAIL("nginx did not come up: " << read_text(dir + "/stderr.log") << read_text(dir + "/error.log"));
  }
  ~Nginx() {
    if (pid_ > 0) {
      ::kill(pid_, SIGQUIT);
      int status = 0;
      for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(50ms);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_default_headers({{"OPEN-SANDBOX-API-KEY", kKey}});
    c->set_read_timeout(60s);
    return c;
  }
  [[nodiscard]] std::string errors() const { return read_text(dir_ + "/error.log"); }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

struct Replica {
  std::string name;
  int port = 0;
  std::unique_ptr<Gateway> gw;
};

struct Cluster {
  TempDir engine_dir;  // the one engine: every replica's --state-dir
  TempDir nginx_dir;
  std::vector<Replica> replicas;
  std::unique_ptr<Nginx> nginx;
  std::vector<std::string> extra_args;  // given to every replica

  explicit Cluster(std::vector<std::string> extra = {}) : extra_args(std::move(extra)) {
    std::vector<int> ports;
    for (int i = 1; i <= 3; ++i) {
      Replica r;
      r.name = "gw-" + std::to_string(i);
      r.port = execd::test::unused_loopback_port();
      ports.push_back(r.port);
      replicas.push_back(std::move(r));
    }
    for (auto& r : replicas) start(r);
    nginx = std::make_unique<Nginx>(nginx_dir.str(), ports);
  }
  void start(Replica& r) {
    std::vector<std::string> args{"--port",       std::to_string(r.port),
                                  "--state",      engine_dir.str() + "/" + r.name + ".db",
                                  "--replica-id", r.name,
                                  "--advertise-url", "http://127.0.0.1:" + std::to_string(r.port)};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    r.gw = std::make_unique<Gateway>(engine_dir.str(), kKey, std::move(args));
  }
  Replica& named(const std::string& name) {
    for (auto& r : replicas) {
      if (r.name == name) return r;
    }
    FAIL("no replica " << name);
    return replicas[0];
  }
  ~Cluster() {
    for (auto& r : replicas) {
      if (r.gw && r.gw->is_up()) r.gw->cleanup();
    }
    nginx.reset();
    for (auto& r : replicas) r.gw.reset();
    execd::test::shell_output(gateway_harness::kill_keepers_under(engine_dir.str() + "/sandboxes/"));
  }
};

/// One request through nginx, its answer and who served it.
struct Answer {
  int status = 0;
  std::string body;
  std::string replica;
};

Answer ask(httplib::Client& c, const std::string& method, const std::string& path, const std::string& body = "") {
  httplib::Result r = method == "GET" ? c.Get(path) : c.Post(path, body, "application/json");
  REQUIRE(r);
  return {r->status, r->body, r->get_header_value(kReplicaHeader)};
}

}  // namespace

TEST_CASE("replicas behind nginx: a session's requests reach its owner; a killed replica's sessions move intact") {
  Cluster cluster;
  auto front = cluster.nginx->client();

  // Creates go anywhere.
  constexpr int kSandboxes = 9;
  std::map<std::string, std::string> owner;  // sandbox id -> replica that created it
  std::set<std::string> creators;
  for (int i = 0; i < kSandboxes; ++i) {
    auto r =
        front->Post("/v1/sandboxes", json{{"image", {{"uri", "host"}}}, {"timeout", 600}}.dump(), "application/json");
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 202);
    const std::string replica = r->get_header_value(kReplicaHeader);
    REQUIRE_FALSE(replica.empty());
    owner[json::parse(r->body)["id"]] = replica;
    creators.insert(replica);
  }
  MESSAGE(kSandboxes << " creates landed on " << creators.size() << " replicas");
  CHECK(creators.size() >= 2);

  // Every request of a session (lifecycle and proxy) is answered by its owner.
  for (const auto& [id, who] : owner) {
    INFO("sandbox " << id << " owned by " << who);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    Answer a;
    while (std::chrono::steady_clock::now() < deadline) {
      a = ask(*front, "GET", "/v1/sandboxes/" + id);
      REQUIRE(a.status == 200);
      CHECK(a.replica == who);
      if (json::parse(a.body)["status"]["state"] == "Running") break;
      std::this_thread::sleep_for(100ms);
    }
    REQUIRE(json::parse(a.body)["status"]["state"] == "Running");
    const Answer pong = ask(*front, "GET", "/v1/sandboxes/" + id + "/proxy/44772/ping");
    CHECK(pong.status == 200);
    CHECK(pong.replica == who);
    const Answer wrote = ask(*front, "POST", "/v1/sandboxes/" + id + "/proxy/44772/command",
                             json{{"command", "echo kept-" + id + " > /workspace/keep.txt"}}.dump());
    CHECK(wrote.status == 200);
    CHECK(wrote.replica == who);
    const Answer ep = ask(*front, "GET", "/v1/sandboxes/" + id + "/endpoints/44772");
    CHECK(ep.status == 200);
    CHECK(ep.replica == who);
  }

  // Any replica lists every sandbox (its own rows, the others' from the engine).
  for (auto& r : cluster.replicas) {
    auto listed = r.gw->get("/v1/sandboxes?state=Running&pageSize=100");
    REQUIRE(listed);
    const json page = json::parse(listed->body);
    CHECK(page["pagination"]["totalItems"] == kSandboxes);
  }

  // A replica that does not own a sandbox forwards to the one that does.
  {
    const auto& [id, who] = *owner.begin();
    for (auto& r : cluster.replicas) {
      if (r.name == who) continue;
      auto got = r.gw->get("/v1/sandboxes/" + id);
      REQUIRE(got);
      CHECK(got->status == 200);
      CHECK(got->get_header_value(kReplicaHeader) == who);
      auto pong = r.gw->get("/v1/sandboxes/" + id + "/proxy/44772/ping");
      REQUIRE(pong);
      CHECK(pong->status == 200);
      CHECK(pong->get_header_value(kReplicaHeader) == who);
    }
  }

  // Kill the owner of the first sandbox: its sessions move to another replica, with
  // their files, and stay there; nobody else's move.
  const std::string victim = owner.begin()->second;
  std::vector<std::string> moved;
  for (const auto& [id, who] : owner) {
    if (who == victim) moved.push_back(id);
  }
  cluster.named(victim).gw->kill();
  std::map<std::string, std::string> new_owner;
  for (const auto& [id, who] : owner) {
    INFO("sandbox " << id << " was owned by " << who << " (killed: " << victim << ")");
    const Answer a = ask(*front, "GET", "/v1/sandboxes/" + id);
    INFO(a.body);
    REQUIRE(a.status == 200);
    CHECK(json::parse(a.body)["status"]["state"] == "Running");
    if (who != victim) {
      CHECK(a.replica == who);
      continue;
    }
    CHECK(a.replica != victim);
    CHECK_FALSE(a.replica.empty());
    new_owner[id] = a.replica;
    const Answer pong = ask(*front, "GET", "/v1/sandboxes/" + id + "/proxy/44772/ping");
    CHECK(pong.status == 200);
    CHECK(pong.replica == a.replica);
    const Answer kept =
        ask(*front, "GET", "/v1/sandboxes/" + id + "/proxy/44772/files/download?path=/workspace/keep.txt");
    CHECK(kept.status == 200);
    CHECK(kept.body == "kept-" + id + "\n");
    CHECK(kept.replica == a.replica);
  }
  REQUIRE_FALSE(moved.empty());
  CHECK(new_owner.size() == moved.size());

  // The killed replica comes back: the sessions it lost stay with their adopter, and it
  // forwards requests for them there.
  cluster.start(cluster.named(victim));
  for (const auto& [id, adopter] : new_owner) {
    auto got = cluster.named(victim).gw->get("/v1/sandboxes/" + id);
    REQUIRE(got);
    CHECK(got->status == 200);
    CHECK(got->get_header_value(kReplicaHeader) == adopter);
    const Answer again = ask(*front, "GET", "/v1/sandboxes/" + id + "/proxy/44772/ping");
    CHECK(again.status == 200);
    CHECK(again.replica == adopter);
  }
  // Deleting through nginx works wherever the owner is.
  for (const auto& [id, who] : owner) {
    auto r = front->Delete("/v1/sandboxes/" + id);
    REQUIRE(r);
    CHECK(r->status == 204);
  }
  INFO(cluster.nginx->errors());
}

TEST_CASE("replicas: a dead replica's sandboxes expire on another replica though no request comes for them") {
  Cluster cluster({"--replica-expiry-scan", "1s"});
  Replica& dead = cluster.replicas[0];
  const std::string soon = dead.gw->create(json{{"image", {{"uri", "host"}}}, {"timeout", 5}})["id"];
  const std::string later = dead.gw->create(json{{"image", {{"uri", "host"}}}, {"timeout", 600}})["id"];
  dead.gw->wait_state(soon, "Running");
  dead.gw->wait_state(later, "Running");
  const std::string soon_dir = cluster.engine_dir.str() + "/sandboxes/" + soon;
  const std::string later_dir = cluster.engine_dir.str() + "/sandboxes/" + later;
  REQUIRE(std::filesystem::exists(soon_dir));
  dead.gw->kill();

  // No request for either sandbox reaches any replica (a request would adopt it on the
  // way): only the engine is watched, until the expired one's instance is gone.
  const auto deadline = std::chrono::steady_clock::now() + 40s;
  while (std::filesystem::exists(soon_dir) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  INFO("replica logs: " << cluster.replicas[1].gw->log() << cluster.replicas[2].gw->log());
  REQUIRE_FALSE(std::filesystem::exists(soon_dir));
  CHECK(std::filesystem::exists(later_dir));  // not expired: left for whoever gets its next request

  // The adopter keeps the row: Terminated by expiry, saying whose it was.
  int adopters = 0;
  for (size_t i = 1; i < cluster.replicas.size(); ++i) {
    auto r = cluster.replicas[i].gw->get("/v1/sandboxes/" + soon);
    REQUIRE(r);
    if (r->status != 200) continue;
    const json s = json::parse(r->body);
    INFO(r->body);
    CHECK(s["status"]["state"] == "Terminated");
    CHECK(s["status"]["reason"] == "ttl_expiry");
    CHECK(r->get_header_value(kReplicaHeader) == cluster.replicas[i].name);
    ++adopters;
  }
  CHECK(adopters == 1);

  // The one that has not expired is still served, by whichever replica is asked first.
  auto front = cluster.nginx->client();
  const Answer a = ask(*front, "GET", "/v1/sandboxes/" + later);
  INFO(a.body);
  REQUIRE(a.status == 200);
  CHECK(json::parse(a.body)["status"]["state"] == "Running");
  CHECK(a.replica != dead.name);
  auto deleted = front->Delete("/v1/sandboxes/" + later);
  REQUIRE(deleted);
  CHECK(deleted->status == 204);
}
