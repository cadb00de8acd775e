#pragma once

#include <span>
#include <string_view>

namespace execd::api {

/// One file of the browser console, embedded in the binary at build time (ui/embed.py).
struct UiAsset {
  std::string_view path;          ///< URL path, e.g. "/ui/app.js"
  std::string_view content_type;  ///< e.g. "text/javascript; charset=utf-8"
  std::string_view etag;          ///< strong ETag, quoted: a hash of `body`
  std::string_view body;
};

/// Every embedded file; static storage, valid for the program's life.
std::span<const UiAsset> ui_assets();

}  // namespace execd::api
