#include <doctest/doctest.h>

#include "jupyter/hmac_signer.hpp"
#include "jupyter/kernelspec.hpp"
#include "jupyter/message.hpp"
#include "support/temp_dir.hpp"

using namespace execd;

TEST_CASE("HMAC-SHA256 matches the RFC 4231 style reference and verifies in constant time") {
  jupyter::HmacSigner signer("key");
  // HMAC_SHA256("key", "The quick brown fox jumps over the lazy dog"), split over frames.
  CHECK(signer.sign({"The quick brown fox ", "jumps over the lazy dog"}) ==
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
  CHECK(signer.verify({"The quick brown fox jumps over the lazy dog"},
                      "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"));
  CHECK_FALSE(signer.verify({"The quick brown fox jumps over the lazy cat"},
                            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"));
  CHECK(jupyter::HmacSigner("").sign({"x"}).empty());
}

TEST_CASE("a message survives encode/decode; a tampered one is refused") {
  jupyter::HmacSigner signer("secret");
  auto m = jupyter::make_message("execute_request", {{"code", "1+1"}}, "session-1");
  m.identities = {"peer"};
  auto frames = jupyter::encode(m, signer);
  CHECK(frames[1] == "<IDS|MSG>");
  auto back = jupyter::decode(frames, signer);
  REQUIRE(back);
  CHECK(back->type() == "execute_request");
  CHECK(back->id() == m.id());
  CHECK(back->content["code"] == "1+1");
  CHECK(back->identities == std::vector<std::string>{"peer"});
  frames[6] = R"({"code":"import os"})";
  CHECK_FALSE(jupyter::decode(frames, signer));
  CHECK_FALSE(jupyter::decode({"just", "junk"}, signer));
}

TEST_CASE("kernelspecs are found by language, earlier directories first, preferences win") {
  test::TempDir a, b;
  a.write("kernels/py-a/kernel.json", R"({"argv":["/bin/a","{connection_file}"],"display_name":"A","language":"Python"})");
  b.write("kernels/py-a/kernel.json", R"({"argv":["/bin/shadowed"],"language":"python"})");
  b.write("kernels/py-b/kernel.json", R"({"argv":["/bin/b"],"language":"python","interrupt_mode":"message"})");
  b.write("kernels/broken/kernel.json", "{not json");
  auto specs = jupyter::discover_kernelspecs({a.str(), b.str()});
  REQUIRE(specs.size() == 2);
  CHECK(specs[0].name == "py-a");
  CHECK(specs[0].argv.front() == "/bin/a");
  CHECK(specs[0].language == "python");
  CHECK(jupyter::specs_by_language(specs, {}).at("python").name == "py-a");
  CHECK(jupyter::specs_by_language(specs, {{"python", "py-b"}}).at("python").interrupt_mode == "message");
}
