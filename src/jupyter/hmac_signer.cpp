#include "jupyter/hmac_signer.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "core/bytes.hpp"

namespace execd::jupyter {

std::string HmacSigner::sign(const std::vector<std::string_view>& frames) const {
  if (key_.empty()) return {};
  // OpenSSL keeps fetched algorithms cached, so a fetch per message is cheap.
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  char digest_name[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0), OSSL_PARAM_construct_end()};
  EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key_.data()), key_.size(), params);
  for (auto f : frames) EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(f.data()), f.size());
  unsigned char digest[EVP_MAX_MD_SIZE];
  size_t len = 0;
  EVP_MAC_final(ctx, digest, &len, sizeof digest);
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  return core::to_hex(digest, len);
}

bool HmacSigner::verify(const std::vector<std::string_view>& frames, std::string_view signature) const {
  return core::constant_time_equals(sign(frames), signature);
}

}  // namespace execd::jupyter
