#include "http/request_id.hpp"

#include "core/id.hpp"

namespace execd::http {

std::string accept_request_id(std::string_view incoming) {
  bool usable = !incoming.empty() && incoming.size() <= kMaxRequestIdBytes && incoming.front() != ' ' &&
                incoming.back() != ' ';
  for (const char c : incoming) {
    if (c < 0x20 || c > 0x7e) usable = false;
  }
  return usable ? std::string(incoming) : core::new_uuid();
}

}  // namespace execd::http
