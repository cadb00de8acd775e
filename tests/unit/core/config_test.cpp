#include <doctest/doctest.h>

#include "core/config.hpp"

using execd::core::parse_config;
using execd::core::parse_duration;
using execd::core::parse_size;

TEST_CASE("defaults when nothing is given") {
  auto c = parse_config({}, {});
  REQUIRE(c.ok());
  CHECK(c->host == "127.0.0.1");
  CHECK(c->port == 44772);
  CHECK(c->access_token.empty());
  CHECK(c->http_threads >= 1024);
  CHECK(c->sse_keepalive <= std::chrono::seconds(3));
}

TEST_CASE("flag beats environment beats default") {
  auto from_env = parse_config({}, {{"EXECD_ACCESS_TOKEN", "envtok"}, {"EXECD_PORT", "8080"}});
  REQUIRE(from_env.ok());
  CHECK(from_env->access_token == "envtok");
  CHECK(from_env->port == 8080);
  auto from_flag = parse_config({"--access-token", "flagtok", "--port=9090"}, {{"EXECD_ACCESS_TOKEN", "envtok"}});
  REQUIRE(from_flag.ok());
  CHECK(from_flag->access_token == "flagtok");
  CHECK(from_flag->port == 9090);
}

TEST_CASE("bad values are refused with a message naming the flag") {
  auto port = parse_config({"--port", "99999"}, {});
  REQUIRE_FALSE(port.ok());
  CHECK(port.error().message.find("--port") != std::string::npos);
  auto unknown = parse_config({"--frobnicate", "1"}, {});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message.find("--frobnicate") != std::string::npos);
  auto missing = parse_config({"--port"}, {});
  CHECK_FALSE(missing.ok());
  auto level = parse_config({"--log-level", "loud"}, {});
  CHECK_FALSE(level.ok());
  auto env = parse_config({}, {{"EXECD_PORT", "abc"}});
  REQUIRE_FALSE(env.ok());
  CHECK(env.error().message.find("EXECD_PORT") != std::string::npos);
  CHECK_FALSE(parse_config({"stray"}, {}).ok());
}

TEST_CASE("durations and sizes") {
  CHECK(parse_duration("1500ms").value() == std::chrono::milliseconds(1500));
  CHECK(parse_duration("3s").value() == std::chrono::seconds(3));
  CHECK(parse_duration("2").value() == std::chrono::seconds(2));
  CHECK(parse_duration("1m").value() == std::chrono::minutes(1));
  CHECK_FALSE(parse_duration("").ok());
  CHECK_FALSE(parse_duration("3 weeks").ok());
  CHECK_FALSE(parse_duration("-1s").ok());
  CHECK(parse_size("1024").value() == 1024);
  CHECK(parse_size("16MiB").value() == 16u << 20);
  CHECK(parse_size("2G").value() == uint64_t{2} << 30);
  CHECK_FALSE(parse_size("lots").ok());
}

TEST_CASE("kernel map parses LANG=SPEC lists") {
  auto c = parse_config({"--kernel", "python=xpython,javascript=jslab"}, {});
  REQUIRE(c.ok());
  CHECK(c->kernel_for_language.at("python") == "xpython");
  CHECK(c->kernel_for_language.at("javascript") == "jslab");
  CHECK_FALSE(parse_config({"--kernel", "python"}, {}).ok());
}

TEST_CASE("help lists every flag") {
  const auto help = execd::core::config_help();
  for (const char* f : {"--host", "--port", "--access-token", "--log-level", "--graceful-shutdown-timeout",
                        "--http-threads", "EXECD_LOG_FILE"}) {
    CHECK_MESSAGE(help.find(f) != std::string::npos, f);
  }
}
