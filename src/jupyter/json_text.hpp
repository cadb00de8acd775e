#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace execd::jupyter {

/// JSON text as kernels send it, made acceptable to a strict parser without losing
/// anything else: each ill-formed UTF-8 sequence (a stray byte, a truncated sequence, an
/// overlong form, an encoded surrogate, a code point past U+10FFFF) becomes U+FFFD, one
/// per maximal bad subpart as Unicode recommends, and each `\uD800`..`\uDFFF` escape that
/// is not half of a proper surrogate pair becomes `\ufffd`. ipykernel sends lone
/// surrogates (`print('\udcff')`) as raw bytes through Python's surrogateescape.
/// nullopt when `text` needs no repair (the common case costs one scan, no copy).
/// Pure; linear in the size of `text`; any bytes.
std::optional<std::string> repair_json_text(std::string_view text);

/// Cuts the body of a JSON string literal (the bytes between its quotes, valid UTF-8)
/// into pieces of at most about `max_bytes` each, never inside an escape sequence or a
/// UTF-8 sequence, so each piece is itself the body of a valid literal. A piece exceeds
/// `max_bytes` only by the rest of one escape or character. Pure; views into `body`.
std::vector<std::string_view> split_json_string_body(std::string_view body, size_t max_bytes);

}  // namespace execd::jupyter
