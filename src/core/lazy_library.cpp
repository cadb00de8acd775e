#include "core/lazy_library.hpp"

#include <dlfcn.h>

#include <spdlog/spdlog.h>

namespace execd::core {

bool LazyLibrary::loaded() {
  std::call_once(once_, [this] {
    handle_ = ::dlopen(soname_, RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) {
      spdlog::error("cannot load {}: {}", soname_, ::dlerror());
    } else {
      spdlog::debug("{} loaded on first use", soname_);
    }
  });
  return handle_ != nullptr;
}

void* LazyLibrary::symbol(const char* name) {
  if (!loaded()) return nullptr;
  void* p = ::dlsym(handle_, name);
  if (p == nullptr) spdlog::error("{} has no {}", soname_, name);
  return p;
}

}  // namespace execd::core
