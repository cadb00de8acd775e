#include <doctest/doctest.h>

#include "exec/event.hpp"
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

TEST_CASE("stream text is passed on as its JSON literal and renders the same event") {
  jupyter::HmacSigner signer("k");
  auto m = jupyter::make_message("stream", {{"name", "stderr"}, {"text", "line \"1\"\n\u00e9\\ end\n"}}, "s");
  auto back = jupyter::decode(jupyter::encode(m, signer), signer);
  REQUIRE(back);
  CHECK(back->content["name"] == "stderr");
  REQUIRE_FALSE(back->stream_text_literal.empty());
  auto event = exec::events::stream_from_json_literal(true, back->stream_text_literal);
  auto j = nlohmann::json::parse(event.json);
  CHECK(j["type"] == "stderr");
  CHECK(j["text"] == "line \"1\"\n\u00e9\\ end\n");
  CHECK(j["timestamp"].is_number_integer());
  CHECK(event.json == exec::events::stderr_text(j["text"]).json.substr(0, event.json.find("\"timestamp\"")) +
                          event.json.substr(event.json.find("\"timestamp\"")));
  // Anything but a flat object of strings takes the ordinary path.
  auto odd = jupyter::make_message("stream", {{"name", "stdout"}, {"text", "x"}, {"extra", 1}}, "s");
  auto parsed = jupyter::decode(jupyter::encode(odd, signer), signer);
  REQUIRE(parsed);
  CHECK(parsed->stream_text_literal.empty());
  CHECK(parsed->content["text"] == "x");
}

TEST_CASE("a stream message with invalid UTF-8 that is not a flat text/name object decodes whole (fuzz finding)") {
  // The repaired copy of the content must outlive the full parse that this shape falls
  // back to; it was freed first (heap-use-after-free under ASan).
  jupyter::HmacSigner signer("k");
  const std::string header = R"({"msg_type":"stream","msg_id":"m1"})";
  const std::string content = "{\"name\":\"stdout\",\"text\":\"a\xff\",\"extra\":{\"n\":[1,2]}}";
  std::vector<std::string> frames = {"<IDS|MSG>", "", header, "{}", "{}", content};
  frames[1] = signer.sign({frames[2], frames[3], frames[4], frames[5]});
  auto m = jupyter::decode(frames, signer);
  REQUIRE(m);
  CHECK(m->content["extra"]["n"][1] == 2);
  CHECK(m->content["text"] == "a\xef\xbf\xbd");  // U+FFFD for the bad byte
}
