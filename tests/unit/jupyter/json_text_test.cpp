#include <doctest/doctest.h>

#include <string>

#include "core/json_parse.hpp"
#include "exec/event.hpp"
#include "jupyter/json_text.hpp"
#include "jupyter/message.hpp"

using namespace execd;

namespace {
const std::string kFffd = "\xEF\xBF\xBD";
}

TEST_CASE("repair_json_text: one U+FFFD per bad sequence, every other byte kept, nothing done to good text") {
  CHECK_FALSE(jupyter::repair_json_text(R"({"text":"plain \u00e9 \ud83d\ude00 \\udcff é"})").has_value());
  CHECK(jupyter::repair_json_text("a\xFF" "b") == "a" + kFffd + "b");
  CHECK(jupyter::repair_json_text("\xC0\xAF") == kFffd + kFffd);                // overlong: two bad bytes
  CHECK(jupyter::repair_json_text("\xED\xA0\x80x") == kFffd + kFffd + kFffd + "x");  // encoded surrogate
  CHECK(jupyter::repair_json_text("\xE2\x82") == kFffd);                           // truncated: one maximal subpart
  CHECK(jupyter::repair_json_text("\xF4\x90\x80\x80") == kFffd + kFffd + kFffd + kFffd);  // past U+10FFFF
  CHECK(jupyter::repair_json_text(R"("\udcff and \ud800x")") == R"("\ufffd and \ufffdx")");
  CHECK(jupyter::repair_json_text(R"("\ude00\ud83d")") == R"("\ufffd\ufffd")");  // reversed pair
  // Long ASCII runs around a bad byte (the 8-byte fast path).
  const std::string run(1000, 'z');
  CHECK(jupyter::repair_json_text(run + "\x80" + run) == run + kFffd + run);
}

TEST_CASE("split_json_string_body never cuts an escape or a character") {
  std::string body;
  for (int i = 0; i < 3000; ++i) body += i % 3 == 0 ? "\\u00e9" : i % 3 == 1 ? "\xC3\xA9" : "\\\\";
  for (size_t max : {6u, 7u, 10u, 64u, 1000u}) {
    std::string joined;
    for (auto piece : jupyter::split_json_string_body(body, max)) {
      CHECK(piece.size() <= max + 5);
      auto parsed = core::parse_json("\"" + std::string(piece) + "\"");
      REQUIRE_MESSAGE(parsed, std::string(piece));
      joined += piece;
    }
    CHECK(joined == body);
  }
  CHECK(jupyter::split_json_string_body("", 10).size() == 1);
}

TEST_CASE("decode repairs invalid UTF-8 after verifying the raw frames") {
  jupyter::HmacSigner signer("k");
  auto m = jupyter::make_message("stream", {{"name", "stdout"}, {"text", "PLACEHOLDER"}}, "s");
  auto frames = jupyter::encode(m, signer);
  // What ipykernel sends for print('a\udcffb'): a raw 0xFF byte, signed as sent.
  const size_t content = frames.size() - 1;
  frames[content].replace(frames[content].find("PLACEHOLDER"), 11, "a\xFF" "b");
  frames[1] = signer.sign({frames[2], frames[3], frames[4], frames[5]});
  auto back = jupyter::decode(frames, signer);
  REQUIRE(back);
  REQUIRE_FALSE(back->stream_text_literal.empty());
  CHECK(core::parse_json(back->stream_text_literal)->get<std::string>() == "a" + kFffd + "b");
  // A non-stream message with the same byte is parsed (repaired) whole.
  auto r = jupyter::make_message("display_data", {{"data", {{"text/plain", "PLACEHOLDER"}}}}, "s");
  auto rf = jupyter::encode(r, signer);
  rf[5].replace(rf[5].find("PLACEHOLDER"), 11, "q\xFFr");
  rf[1] = signer.sign({rf[2], rf[3], rf[4], rf[5]});
  auto rback = jupyter::decode(rf, signer);
  REQUIRE(rback);
  CHECK(rback->content["data"]["text/plain"] == "q" + kFffd + "r");
  // Tampering after signing is still refused: repair happens only after verification.
  rf[5] += " ";
  CHECK_FALSE(jupyter::decode(rf, signer));
  // Too deep for core::parse_json: refused, not a crash.
  auto deep = jupyter::make_message("status", nlohmann::json::object(), "s");
  auto df = jupyter::encode(deep, signer);
  df[5] = std::string(100000, '[') + std::string(100000, ']');
  df[1] = signer.sign({df[2], df[3], df[4], df[5]});
  CHECK_FALSE(jupyter::decode(df, signer));
}

TEST_CASE("decode leaves an oversized non-stream content unparsed and says how big it was") {
  jupyter::HmacSigner signer("k");
  auto m = jupyter::make_message("display_data", {{"data", {{"image/png", std::string(5000, 'A')}}}}, "s");
  auto back = jupyter::decode(jupyter::encode(m, signer), signer, jupyter::DecodeLimits{1000});
  REQUIRE(back);
  CHECK(back->skipped_content_bytes > 5000);
  CHECK(back->content.empty());
}
