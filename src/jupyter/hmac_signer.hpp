#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace execd::jupyter {

/// HMAC-SHA256 over a message's four JSON frames, as the Jupyter wire protocol signs
/// them; hex digest. An empty key signs nothing (signature ""), as the protocol allows.
class HmacSigner {
 public:
  explicit HmacSigner(std::string key) : key_(std::move(key)) {}

  [[nodiscard]] std::string sign(const std::vector<std::string_view>& frames) const;
  /// Constant-time comparison with sign(frames).
  [[nodiscard]] bool verify(const std::vector<std::string_view>& frames, std::string_view signature) const;

 private:
  std::string key_;
};

}  // namespace execd::jupyter
