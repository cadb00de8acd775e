#pragma once

#include <mutex>

namespace execd::core {

/// A shared library opened by the dynamic loader on first use instead of linked at start.
///
/// Why: libzmq and libarchive bring a dozen dependencies each (krb5, sodium, pgm; libxml2,
/// ICU, nettle, lzma, zstd...), ~1.5 MiB of an idle daemon's RSS apiece, for features
/// only some daemons ever use. The binary defines the library's C functions itself (see
/// EXECD_LAZY_FORWARD) and each forwards to the real one, resolved here on its first call.
/// Thread-safe; the library stays loaded for the process's life.
class LazyLibrary {
 public:
  /// `soname` must outlive the object (a string literal).
  explicit constexpr LazyLibrary(const char* soname) : soname_(soname) {}
  LazyLibrary(const LazyLibrary&) = delete;
  LazyLibrary& operator=(const LazyLibrary&) = delete;

  /// The address of `name`, or nullptr (logged) when the library or the symbol is missing.
  void* symbol(const char* name);
  /// True once the library is loaded (loads it).
  bool loaded();

 private:
  const char* soname_;
  std::once_flag once_;
  void* handle_ = nullptr;
};

}  // namespace execd::core

/// Defines the C function `name` (declared by the library's own header) as a forward to
/// the real one in `lib` (a core::LazyLibrary&), resolved once. When the library cannot be
/// loaded it returns `fail` with errno ENOTSUP, as a failing call of the library would.
/// For a void function pass `(void)0` as `fail`.
#define EXECD_LAZY_FORWARD(lib, ret, fail, name, params, args)                                 \
  extern "C" ret name params {                                                                 \
    static const auto real = reinterpret_cast<decltype(&::name)>((lib).symbol(#name));         \
    if (real == nullptr) {                                                                     \
      errno = ENOTSUP;                                                                         \
      return fail;                                                                             \
    }                                                                                          \
    return real args;                                                                          \
  }
