#include "jupyter/message.hpp"

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string_view>

#include "core/clock.hpp"
#include "core/id.hpp"
#include "core/utf8.hpp"

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

core::Result<Message> decode(std::vector<std::string> frames, const HmacSigner& signer) {
  size_t delim = 0;
  while (delim < frames.size() && frames[delim] != kDelimiter) ++delim;
  if (delim == frames.size() || frames.size() < delim + 6) {
    return core::make_error(core::Errc::invalid_argument, "malformed Jupyter message (" + std::to_string(frames.size()) + " frames)");
  }
  if (!signer.verify({frames[delim + 2], frames[delim + 3], frames[delim + 4], frames[delim + 5]}, frames[delim + 1])) {
    return core::make_error(core::Errc::invalid_argument, "Jupyter message with a bad signature");
  }
  Message m;
  m.identities.assign(frames.begin(), frames.begin() + static_cast<long>(delim));
  try {
    m.header = nlohmann::json::parse(frames[delim + 2]);
    m.parent_header = nlohmann::json::parse(frames[delim + 3]);
    m.metadata = nlohmann::json::parse(frames[delim + 4]);
    bool done = false;
    if (m.type() == "stream") {
      const std::string& raw = frames[delim + 5];
      auto fields = flat_string_object(raw);
      if (fields && fields->count("text") != 0 && fields->count("name") != 0 && core::valid_utf8((*fields)["text"])) {
        m.stream_text_literal = std::string((*fields)["text"]);
        m.content = {{"name", nlohmann::json::parse((*fields)["name"])}};
        done = true;
      }
    }
    if (!done) m.content = nlohmann::json::parse(frames[delim + 5]);
  } catch (const nlohmann::json::exception& e) {
    return core::make_error(core::Errc::invalid_argument, std::string("Jupyter message with bad JSON: ") + e.what());
  }
  for (size_t i = delim + 6; i < frames.size(); ++i) m.buffers.push_back(std::move(frames[i]));
  return m;
}

}  // namespace execd::jupyter
