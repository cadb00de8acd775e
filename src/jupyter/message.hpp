#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "jupyter/hmac_signer.hpp"

namespace execd::jupyter {

/// Text inside a decoded message's frames, not copied out of them: a `stream` message's
/// text can be 50 MB. Valid as long as the Message it came with and, for decode_views, the
/// frames given to it.
class FrameText {
 public:
  FrameText() = default;
  explicit FrameText(std::string_view v) : v_(v) {}
  [[nodiscard]] bool empty() const { return v_.empty(); }
  [[nodiscard]] size_t size() const { return v_.size(); }
  [[nodiscard]] std::string_view view() const { return v_; }
  operator std::string_view() const { return v_; }  // NOLINT: used where a view is taken
  [[nodiscard]] std::string str() const { return std::string(v_); }
  [[nodiscard]] std::string substr(size_t pos, size_t n = std::string_view::npos) const { return std::string(v_.substr(pos, n)); }
  bool operator==(std::string_view other) const { return v_ == other; }

 private:
  std::string_view v_;
};

/// One Jupyter message as a plain value (the wire frames are in encode/decode).
struct Message {
  std::vector<std::string> identities;
  nlohmann::json header = nlohmann::json::object();
  nlohmann::json parent_header = nlohmann::json::object();
  nlohmann::json metadata = nlohmann::json::object();
  nlohmann::json content = nlohmann::json::object();
  std::vector<std::string> buffers;
  /// For `stream` messages: the content's "text" as its escaped JSON string literal
  /// (quotes included, valid UTF-8, valid JSON), and `content` then holds only "name".
  /// Large output is passed on without being parsed, re-serialised or copied. Empty for
  /// every other message.
  FrameText stream_text_literal;
  /// Bytes of a content frame that was not parsed because it exceeded
  /// DecodeLimits::max_content_bytes (`content` is then empty); 0 otherwise.
  size_t skipped_content_bytes = 0;

  [[nodiscard]] std::string type() const { return header.is_object() ? header.value("msg_type", "") : std::string(); }
  [[nodiscard]] std::string id() const { return header.is_object() ? header.value("msg_id", "") : std::string(); }
  [[nodiscard]] std::string parent_id() const {
    return parent_header.is_object() ? parent_header.value("msg_id", "") : std::string();
  }

  /// What stream_text_literal may point into (owned frames, or a repaired copy).
  std::shared_ptr<const void> storage;
};

/// A new request of `msg_type` in `session` (fresh msg_id, protocol version 5.3).
Message make_message(const std::string& msg_type, nlohmann::json content, const std::string& session);

/// identities, "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers.
std::vector<std::string> encode(const Message& m, const HmacSigner& signer);

struct DecodeLimits {
  /// A content frame larger than this is not parsed into JSON (a 100 MB display_data
  /// would take several copies of itself); stream text is exempt (it is never parsed).
  size_t max_content_bytes = 64 * 1024 * 1024;
};

/// Frames -> verified Message; the one way kernel bytes become a message. Pure (no I/O, no
/// globals), any bytes, never throws. In order:
///  1. finds "<IDS|MSG>" with at least five frames after it, else invalid_argument;
///  2. verifies the HMAC of the four JSON frames, exactly as received, against the
///     signature frame (constant time), else invalid_argument: nothing unsigned is parsed;
///  3. repairs each JSON frame leniently (repair_json_text: U+FFFD for ill-formed UTF-8 and
///     lone surrogate escapes; every other byte kept) and parses it with core::parse_json
///     (nesting limit), else invalid_argument;
///  4. for a `stream` message whose content is a flat object of strings, keeps the text as
///     its JSON literal (a view, see Message::stream_text_literal) instead of parsing it.
/// Frames before the delimiter become identities, frames after content become buffers.
/// The result's FrameText views point into `frames`: keep them alive while it is used.
core::Result<Message> decode_views(std::span<const std::string_view> frames, const HmacSigner& signer,
                                   const DecodeLimits& limits = {});
/// decode_views over frames the message then owns (for tests and tools).
core::Result<Message> decode(std::vector<std::string> frames, const HmacSigner& signer, const DecodeLimits& limits = {});

}  // namespace execd::jupyter
