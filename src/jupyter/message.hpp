#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "jupyter/hmac_signer.hpp"

namespace execd::jupyter {

/// One Jupyter message as a plain value (the wire frames are in encode/decode).
struct Message {
  std::vector<std::string> identities;
  nlohmann::json header = nlohmann::json::object();
  nlohmann::json parent_header = nlohmann::json::object();
  nlohmann::json metadata = nlohmann::json::object();
  nlohmann::json content = nlohmann::json::object();
  std::vector<std::string> buffers;
  /// For `stream` messages: the content's "text" as its escaped JSON string literal
  /// (quotes included), and `content` then holds only "name". Large output is passed on
  /// without being parsed and re-serialised. Empty for every other message.
  std::string stream_text_literal;

  [[nodiscard]] std::string type() const { return header.value("msg_type", ""); }
  [[nodiscard]] std::string id() const { return header.value("msg_id", ""); }
  [[nodiscard]] std::string parent_id() const {
    return parent_header.is_object() ? parent_header.value("msg_id", "") : std::string();
  }
};

/// A new request of `msg_type` in `session` (fresh msg_id, protocol version 5.3).
Message make_message(const std::string& msg_type, nlohmann::json content, const std::string& session);

/// identities, "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers.
std::vector<std::string> encode(const Message& m, const HmacSigner& signer);
/// The reverse; invalid_argument for a malformed message or a bad signature.
core::Result<Message> decode(std::vector<std::string> frames, const HmacSigner& signer);

}  // namespace execd::jupyter
