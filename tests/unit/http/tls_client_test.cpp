// HTTPS through http::send_request against a real TLS server: python3's ssl module with
// certificates this test makes with `openssl req` (a CA, a server certificate it signs
// for 127.0.0.1 and localhost, and a second CA nobody signed with).
#include "http/tls_client.hpp"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "http/client.hpp"
#include "support/temp_dir.hpp"

using namespace execd;

namespace {

void run(const std::string& cmd) {
  const int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  REQUIRE_MESSAGE(rc == 0, "command failed: " << cmd);
}

// A CA, a server certificate for IP 127.0.0.1 and DNS localhost signed by it, and an
// unrelated CA (EC keys: quick to make).
struct Pki {
  test::TempDir dir;
  std::string path(const char* name) const { return (dir.path() / name).string(); }
  Pki() {
    const std::string d = dir.str();
    auto ca = [&](const std::string& name) {
      run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=" + name +
          " -keyout " + d + "/" + name + ".key -out " + d + "/" + name + ".crt");
    };
    ca("ca");
    ca("other-ca");
    run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=server -keyout " + d +
        "/server.key -out " + d + "/server.csr");
    dir.write("san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    run("openssl x509 -req -in " + d + "/server.csr -CA " + d + "/ca.crt -CAkey " + d +
        "/ca.key -CAcreateserial -days 2 -extfile " + d + "/san.ext -out " + d + "/server.crt");
  }
};

// An HTTPS server in python3: /echo answers the Authorization header it got, /chunked a
// 200 KB chunked body. It writes its port to a file once listening.
constexpr const char* kServer = R"PY(
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(50):
                part = bytes([97 + i % 26]) * 4000
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        body = ("auth=" + self.headers.get("Authorization", "")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(sys.argv[3] + ".tmp", "w").write(str(srv.server_address[1]))
import os; os.rename(sys.argv[3] + ".tmp", sys.argv[3])
srv.serve_forever()
)PY";

struct TlsServer {
  pid_t pid = -1;
  int port = 0;
  explicit TlsServer(const Pki& pki) {
    const std::string script = pki.dir.write("server.py", kServer).string();
    const std::string port_file = pki.path("port");
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::execlp("python3", "python3", script.c_str(), pki.path("server.crt").c_str(), pki.path("server.key").c_str(),
               port_file.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(port_file);
      if (in >> port) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE_MESSAGE(port > 0, "the python TLS server did not start");
  }
  ~TlsServer() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

http::ClientEndpoint endpoint(int port, std::shared_ptr<const http::TlsContext> tls, std::string name = "") {
  http::ClientEndpoint ep;
  ep.host = "127.0.0.1";
  ep.port = port;
  ep.tls = std::move(tls);
  ep.tls_server_name = std::move(name);
  return ep;
}

http::ClientRequest get(std::string target) {
  http::ClientRequest r;
  r.target = std::move(target);
  r.timeout = std::chrono::seconds(10);
  return r;
}

}  // namespace

TEST_CASE("tls client: verified HTTPS with a bearer token, by IP and by name, chunked bodies") {
  Pki pki;
  TlsServer server(pki);
  auto ctx = http::TlsContext::create({.ca_file = pki.path("ca.crt")});
  REQUIRE(ctx);

  auto req = get("/echo");
  req.headers = {{"Authorization", "Bearer s3cret-token"}};
  auto by_ip = http::send_request(endpoint(server.port, *ctx), req);
  REQUIRE_MESSAGE(by_ip, (by_ip ? "" : by_ip.error().message));
  CHECK(by_ip->status == 200);
  CHECK(by_ip->body == "auth=Bearer s3cret-token");

  auto by_name = http::send_request(endpoint(server.port, *ctx, "localhost"), req);
  REQUIRE_MESSAGE(by_name, (by_name ? "" : by_name.error().message));
  CHECK(by_name->body == "auth=Bearer s3cret-token");

  auto chunked = http::send_request(endpoint(server.port, *ctx), get("/chunked"));
  REQUIRE_MESSAGE(chunked, (chunked ? "" : chunked.error().message));
  CHECK(chunked->body.size() == 50u * 4000u);
  CHECK(chunked->body.substr(4000, 3) == "bbb");

  // The CA given as PEM text (a kubeconfig's certificate-authority-data) works the same.
  auto pem_ctx = http::TlsContext::create({.ca_pem = test::read_file(pki.path("ca.crt"))});
  REQUIRE(pem_ctx);
  auto by_pem = http::send_request(endpoint(server.port, *pem_ctx), req);
  REQUIRE_MESSAGE(by_pem, (by_pem ? "" : by_pem.error().message));
  CHECK(by_pem->status == 200);
}

TEST_CASE("tls client: a server the CA did not sign, or a name the certificate lacks, is refused") {
  Pki pki;
  TlsServer server(pki);
  auto other = http::TlsContext::create({.ca_file = pki.path("other-ca.crt")});
  REQUIRE(other);
  auto wrong_ca = http::send_request(endpoint(server.port, *other), get("/echo"));
  REQUIRE_FALSE(wrong_ca);
  CHECK(wrong_ca.error().code == core::Errc::unavailable);
  CHECK(wrong_ca.error().message.find("certificate verify failed") != std::string::npos);

  auto ctx = http::TlsContext::create({.ca_file = pki.path("ca.crt")});
  REQUIRE(ctx);
  auto wrong_name = http::send_request(endpoint(server.port, *ctx, "kubernetes.example"), get("/echo"));
  REQUIRE_FALSE(wrong_name);
  CHECK(wrong_name.error().message.find("hostname mismatch") != std::string::npos);

  // Plain HTTP to a TLS port fails with an error, never hangs.
  http::ClientEndpoint plain{"127.0.0.1", server.port, ""};
  auto r = get("/echo");
  r.timeout = std::chrono::seconds(3);
  CHECK_FALSE(http::send_request(plain, r));
}

TEST_CASE("tls client: contexts refuse missing or unusable trust material by name") {
  Pki pki;
  auto none = http::TlsContext::create({});
  REQUIRE_FALSE(none);
  CHECK(none.error().message.find("no CA") != std::string::npos);
  auto missing = http::TlsContext::create({.ca_file = pki.path("nope.crt")});
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message.find("nope.crt") != std::string::npos);
  auto garbage = http::TlsContext::create({.ca_pem = "not a certificate"});
  REQUIRE_FALSE(garbage);
  CHECK(garbage.error().message.find("no PEM certificate") != std::string::npos);
  auto half =
      http::TlsContext::create({.ca_file = pki.path("ca.crt"), .cert_pem = test::read_file(pki.path("server.crt"))});
  REQUIRE_FALSE(half);
  auto mismatched = http::TlsContext::create({.ca_file = pki.path("ca.crt"),
                                              .cert_pem = test::read_file(pki.path("server.crt")),
                                              .key_pem = test::read_file(pki.path("other-ca.key"))});
  REQUIRE_FALSE(mismatched);
  CHECK(mismatched.error().message.find("does not match") != std::string::npos);
  auto identity = http::TlsContext::create({.ca_file = pki.path("ca.crt"),
                                            .cert_pem = test::read_file(pki.path("server.crt")),
                                            .key_pem = test::read_file(pki.path("server.key"))});
  CHECK(identity);
}
