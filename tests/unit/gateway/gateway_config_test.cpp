#include "gateway/gateway_config.hpp"

#include <doctest/doctest.h>

using execd::gateway::gateway_config_help;
using execd::gateway::parse_gateway_config;

TEST_CASE("gateway flags: defaults, environment fallbacks, flags over environment") {
  auto d = parse_gateway_config({}, {});
  REQUIRE(d.ok());
  CHECK(d->host == "127.0.0.1");
  CHECK(d->port == 8080);
  CHECK(d->backend == "process");
  CHECK(d->endpoint_mode == "direct");
  CHECK(d->max_sandboxes == 0);
  CHECK(d->terminated_retention == std::chrono::hours(1));
  CHECK(d->remove_give_up == std::chrono::milliseconds(0));  // failed removes retried forever
  CHECK(d->pools.empty());

  auto c = parse_gateway_config({"--port", "0", "--backend=docker", "--pool", "host=2", "--pool", "py=1",
                                 "--max-sandboxes", "50", "--sandbox-start-timeout", "1500ms",
                                 "--terminated-retention", "10m", "--endpoint-mode", "proxy", "--public-url",
                                 "https://gw.example/", "--remove-give-up", "2h"},
                                {{"EXECD_GATEWAY_API_KEY", "from-env"}, {"EXECD_GATEWAY_PORT", "9999"}});
  REQUIRE(c.ok());
  CHECK(c->port == 0);
  CHECK(c->api_key == "from-env");
  CHECK(c->backend == "docker");
  REQUIRE(c->pools.size() == 2);
  CHECK(c->pools[0].image == "host");
  CHECK(c->pools[0].size == 2);
  CHECK(c->pools[1].image == "py");
  CHECK(c->max_sandboxes == 50);
  CHECK(c->sandbox_start_timeout == std::chrono::milliseconds(1500));
  CHECK(c->terminated_retention == std::chrono::minutes(10));
  CHECK(c->endpoint_mode == "proxy");
  CHECK(c->public_url == "https://gw.example");  // trailing '/' dropped
  CHECK(c->remove_give_up == std::chrono::hours(2));

  auto env_pools = parse_gateway_config({}, {{"EXECD_GATEWAY_POOL", "a=1,b=3"}});
  REQUIRE(env_pools.ok());
  CHECK(env_pools->pools.size() == 2);
}

TEST_CASE("bad gateway flags are refused with the flag named") {
  auto expect_bad = [](std::vector<std::string> args, const std::string& needle) {
    auto r = parse_gateway_config(args, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(needle) != std::string::npos);
  };
  expect_bad({"--backend", "lambda"}, "--backend");  // kubernetes is built in now
  expect_bad({"--pool", "host"}, "IMAGE=N");
  expect_bad({"--pool", "host=0"}, "pool size");
  expect_bad({"--pool", "host=1", "--pool", "host=2"}, "two --pool");
  expect_bad({"--endpoint-mode", "tunnel"}, "--endpoint-mode");
  expect_bad({"--public-url", "gw:8080"}, "--public-url");
  expect_bad({"--sandbox-start-timeout", "0"}, "--sandbox-start-timeout");
  expect_bad({"--port", "70000"}, "--port");
  expect_bad({"--no-such-flag", "1"}, "no-such-flag");
  CHECK(gateway_config_help().find("--pool IMAGE=N") != std::string::npos);
  CHECK(gateway_config_help().find("EXECD_GATEWAY_API_KEY") != std::string::npos);
}

TEST_CASE("overflow and replica flags: values, env fallbacks, and what is refused") {
  auto c = parse_gateway_config({"--remote", "http://cloud:9090/", "--remote-api-key", "k", "--replica-id", "gw-1",
                                 "--advertise-url", "http://10.0.0.5:8080"},
                                {});
  REQUIRE(c.ok());
  CHECK(c->remote_url == "http://cloud:9090");  // trailing '/' dropped
  CHECK(c->remote_api_key == "k");
  CHECK(c->replica_id == "gw-1");
  CHECK(c->advertise_url == "http://10.0.0.5:8080");
  auto env = parse_gateway_config({}, {{"EXECD_GATEWAY_REMOTE", "http://peer:1"},
                                       {"EXECD_GATEWAY_REMOTE_API_KEY", "pk"},
                                       {"EXECD_GATEWAY_REPLICA_ID", "gw-2"},
                                       {"EXECD_GATEWAY_ADVERTISE_URL", "http://gw-2:8080"}});
  REQUIRE(env.ok());
  CHECK(env->remote_url == "http://peer:1");
  CHECK(env->remote_api_key == "pk");
  CHECK(env->replica_id == "gw-2");
  CHECK(env->advertise_url == "http://gw-2:8080");

  auto expect_bad = [](std::vector<std::string> args, const std::string& needle) {
    auto r = parse_gateway_config(args, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(needle) != std::string::npos);
  };
  expect_bad({"--remote", "https://cloud:9090"}, "--remote");
  expect_bad({"--replica-id", "gw-1"}, "--advertise-url");
  expect_bad({"--advertise-url", "http://a:1"}, "--replica-id");
  expect_bad({"--replica-id", "gw 1", "--advertise-url", "http://a:1"}, "--replica-id");
  expect_bad({"--replica-id", "gw-1", "--advertise-url", "a:1"}, "--advertise-url");
}
