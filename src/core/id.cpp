#include "core/id.hpp"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <stdexcept>

#include "core/bytes.hpp"

namespace execd::core {
namespace {

void fill_random(unsigned char* p, size_t n) {
  while (n > 0) {
    const ssize_t got = getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("getrandom failed");
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
}

std::array<unsigned char, 16> uuid_v4_bytes() {
  std::array<unsigned char, 16> b{};
  fill_random(b.data(), b.size());
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return b;
}

}  // namespace

std::string new_id() {
  const auto b = uuid_v4_bytes();
  return to_hex(b.data(), b.size());
}

std::string new_uuid() {
  const std::string h = new_id();
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" +
         h.substr(20);
}

std::string random_hex(size_t n_bytes) {
  std::string raw(n_bytes, '\0');
  fill_random(reinterpret_cast<unsigned char*>(raw.data()), n_bytes);
  return to_hex(reinterpret_cast<const unsigned char*>(raw.data()), n_bytes);
}

}  // namespace execd::core
