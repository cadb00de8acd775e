#include "jupyter/message.hpp"

#include "core/clock.hpp"
#include "core/id.hpp"

namespace execd::jupyter {
namespace {

constexpr const char* kDelimiter = "<IDS|MSG>";

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
    m.content = nlohmann::json::parse(frames[delim + 5]);
  } catch (const nlohmann::json::exception& e) {
    return core::make_error(core::Errc::invalid_argument, std::string("Jupyter message with bad JSON: ") + e.what());
  }
  for (size_t i = delim + 6; i < frames.size(); ++i) m.buffers.push_back(std::move(frames[i]));
  return m;
}

}  // namespace execd::jupyter
