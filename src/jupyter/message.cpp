#include "jupyter/message.hpp"

#include <cctype>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string_view>

#include "core/clock.hpp"
#include "core/id.hpp"
#include "core/json_parse.hpp"
#include "jupyter/json_text.hpp"

namespace execd::jupyter {
namespace {

constexpr const char* kDelimiter = "<IDS|MSG>";


// A flat JSON object whose values are all strings, as stream content is: each key with
// the raw literal of its value. nullopt for anything else (the caller parses fully).
std::optional<std::map<std::string, std::string_view>> flat_string_object(std::string_view j) {
  std::map<std::string, std::string_view> out;
  size_t i = 0;
  auto ws = [&] {
    while (i < j.size() && (j[i] == ' ' || j[i] == '\n' || j[i] == '\t' || j[i] == '\r')) ++i;
  };
  auto literal = [&]() -> std::optional<std::string_view> {
    if (i >= j.size() || j[i] != '"') return std::nullopt;
    const size_t start = i++;
    // memchr to each quote; one preceded by an odd run of backslashes is escaped.
    for (;;) {
      const void* q = i < j.size() ? std::memchr(j.data() + i, '"', j.size() - i) : nullptr;
      if (q == nullptr) return std::nullopt;
      const size_t at = static_cast<size_t>(static_cast<const char*>(q) - j.data());
      size_t backslashes = 0;
      while (at - backslashes > start + 1 && j[at - backslashes - 1] == '\\') ++backslashes;
      i = at + 1;
      if (backslashes % 2 == 0) break;
    }
    return j.substr(start, i - start);
  };
  ws();
  if (i >= j.size() || j[i++] != '{') return std::nullopt;
  for (;;) {
    ws();
    if (i < j.size() && j[i] == '}') return out;
    auto key = literal();
    if (!key || key->find('\\') != std::string_view::npos) return std::nullopt;
    ws();
    if (i >= j.size() || j[i++] != ':') return std::nullopt;
    ws();
    auto value = literal();
    if (!value) return std::nullopt;
    out[std::string(key->substr(1, key->size() - 2))] = *value;
    ws();
    if (i < j.size() && j[i] == ',') {
      ++i;
      continue;
    }
    if (i < j.size() && j[i] == '}') return out;
    return std::nullopt;
  }
}

// Whether `lit` (quotes included) is a JSON string a strict parser takes as it is: no raw
// control characters, only the escapes JSON defines. UTF-8 was repaired before.
bool plain_string_literal(std::string_view lit) {
  if (lit.size() < 2 || lit.front() != '"' || lit.back() != '"') return false;
  for (size_t i = 1; i + 1 < lit.size(); ++i) {
    const auto c = static_cast<unsigned char>(lit[i]);
    if (c < 0x20) return false;
    if (c != '\\') continue;
    if (i + 2 >= lit.size()) return false;
    const char e = lit[++i];
    if (e == 'u') {
      if (i + 5 >= lit.size()) return false;
      for (size_t k = 1; k <= 4; ++k) {
        if (std::isxdigit(static_cast<unsigned char>(lit[i + k])) == 0) return false;
      }
      i += 4;
    } else if (std::strchr("\"\\/bfnrt", e) == nullptr || e == '\0') {
      return false;
    }
  }
  return true;
}

}  // namespace

Message make_message(const std::string& msg_type, nlohmann::json content, const std::string& session) {
  Message m;
  m.header = {{"msg_id", core::new_uuid()},
              {"session", session},
              {"username", "execd"},
              {"date", core::rfc3339_nano(std::chrono::system_clock::now())},
              {"msg_type", msg_type},
              {"version", "5.3"}};
  m.content = std::move(content);
  return m;
}

std::vector<std::string> encode(const Message& m, const HmacSigner& signer) {
  std::vector<std::string> frames = m.identities;
  const auto dump = [](const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); };
  std::string header = dump(m.header), parent = dump(m.parent_header), metadata = dump(m.metadata), content = dump(m.content);
  frames.emplace_back(kDelimiter);
  frames.push_back(signer.sign({header, parent, metadata, content}));
  frames.push_back(std::move(header));
  frames.push_back(std::move(parent));
  frames.push_back(std::move(metadata));
  frames.push_back(std::move(content));
  for (const auto& b : m.buffers) frames.push_back(b);
  return frames;
}

core::Result<Message> decode_views(std::span<const std::string_view> frames, const HmacSigner& signer,
                                   const DecodeLimits& limits) {
  size_t delim = 0;
  while (delim < frames.size() && frames[delim] != kDelimiter) ++delim;
  if (delim == frames.size() || frames.size() < delim + 6) {
    return core::make_error(core::Errc::invalid_argument, "malformed Jupyter message (" + std::to_string(frames.size()) + " frames)");
  }
  // The signature covers the frames exactly as sent; nothing is parsed before it holds.
  if (!signer.verify({frames[delim + 2], frames[delim + 3], frames[delim + 4], frames[delim + 5]}, frames[delim + 1])) {
    return core::make_error(core::Errc::invalid_argument, "Jupyter message with a bad signature");
  }
  Message m;
  m.identities.reserve(delim);
  for (size_t i = 0; i < delim; ++i) m.identities.emplace_back(frames[i]);
  const auto parse = [](std::string_view text, const char* what, nlohmann::json& into) -> std::optional<core::Error> {
    auto repaired = repair_json_text(text);
    auto j = core::parse_json(repaired ? std::string_view(*repaired) : text);
    if (!j) return core::Error{core::Errc::invalid_argument, std::string("Jupyter message with a bad ") + what + ": " + j.error().message};
    into = std::move(*j);
    return std::nullopt;
  };
  if (auto e = parse(frames[delim + 2], "header", m.header)) return *e;
  if (auto e = parse(frames[delim + 3], "parent header", m.parent_header)) return *e;
  if (auto e = parse(frames[delim + 4], "metadata", m.metadata)) return *e;
  std::string_view content = frames[delim + 5];
  bool done = false;
  // Lives until the end: when the stream shortcut below does not apply, the full parse
  // of `content` still reads the repaired copy (found by fuzz_jupyter_message).
  std::shared_ptr<std::string> repaired;
  if (m.type() == "stream") {
    // Stream text is repaired (rarely needed) into a copy the message keeps; otherwise
    // the literal stays a view of the frame.
    if (auto r = repair_json_text(content)) {
      repaired = std::make_shared<std::string>(std::move(*r));
      content = *repaired;
    }
    auto fields = flat_string_object(content);
    if (fields && fields->count("text") != 0 && fields->count("name") != 0 && plain_string_literal((*fields)["text"]) &&
        plain_string_literal((*fields)["name"])) {
      auto name = core::parse_json((*fields)["name"]);
      if (name) {
        m.stream_text_literal = FrameText((*fields)["text"]);
        m.content = {{"name", std::move(*name)}};
        m.storage = repaired;
        done = true;
      }
    }
  } else if (content.size() > limits.max_content_bytes) {
    m.skipped_content_bytes = content.size();
    done = true;
  }
  if (!done) {
    if (auto e = parse(content, "content", m.content)) return *e;
  }
  m.buffers.reserve(frames.size() - delim - 6);
  for (size_t i = delim + 6; i < frames.size(); ++i) m.buffers.emplace_back(frames[i]);
  return m;
}

core::Result<Message> decode(std::vector<std::string> frames, const HmacSigner& signer, const DecodeLimits& limits) {
  struct Held {
    std::vector<std::string> frames;
    std::shared_ptr<const void> inner;
  };
  auto held = std::make_shared<Held>();
  held->frames = std::move(frames);
  std::vector<std::string_view> views(held->frames.begin(), held->frames.end());
  auto m = decode_views(views, signer, limits);
  if (!m) return m;
  held->inner = std::move(m->storage);
  m->storage = held;
  return m;
}

}  // namespace execd::jupyter
