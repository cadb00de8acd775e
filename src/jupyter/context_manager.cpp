#include "jupyter/context_manager.hpp"

#include <filesystem>

#include "core/id.hpp"

namespace execd::jupyter {

ContextManager::ContextManager(std::shared_ptr<process::ChildReaper> reaper,
                               std::shared_ptr<exec::ExecutionRegistry> executions, Options options)
    : reaper_(std::move(reaper)), executions_(std::move(executions)), options_(std::move(options)) {}

ContextManager::~ContextManager() { shutdown(); }

std::vector<std::string> ContextManager::languages() {
  std::vector<std::string> out;
  for (const auto& [language, spec] : specs_by_language(discover_kernelspecs(jupyter_data_dirs()), options_.kernel_for_language)) {
    out.push_back(language);
  }
  return out;
}

core::Result<KernelSpec> ContextManager::spec_for(const std::string& language) {
  // Discovered on each creation: a kernel installed after start-up is found too.
  auto specs = specs_by_language(discover_kernelspecs(jupyter_data_dirs()), options_.kernel_for_language);
  auto it = specs.find(language);
  if (it != specs.end()) return it->second;
  std::string available;
  for (const auto& [l, s] : specs) available += (available.empty() ? "" : ", ") + l + " (" + s.name + ")";
  return core::make_error(core::Errc::invalid_argument, "no kernel for language '" + language + "'; available: " +
                                                            (available.empty() ? "none (no kernelspec found)" : available));
}

core::Result<std::shared_ptr<CodeContext>> ContextManager::create(const std::string& language, const std::string& cwd) {
  if (language.empty()) return core::make_error(core::Errc::invalid_argument, "field 'language' is required");
  auto spec = spec_for(language);
  if (!spec) return spec.error();
  if (!cwd.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(cwd, ec);
    if (!std::filesystem::is_directory(cwd)) {
      return core::make_error(core::Errc::invalid_argument, "cwd " + cwd + " is not a directory and cannot be created");
    }
  }
  auto kernel = Kernel::start(*spec, cwd, reaper_, options_.start_timeout);
  if (!kernel) return kernel.error();
  auto ctx = std::make_shared<CodeContext>(core::new_id(), *spec, cwd, reaper_, options_.start_timeout, std::move(*kernel));
  std::lock_guard<std::mutex> lock(mu_);
  contexts_[ctx->id()] = ctx;
  return ctx;
}

std::vector<std::shared_ptr<CodeContext>> ContextManager::list(const std::string& language) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<CodeContext>> out;
  for (const auto& [id, c] : contexts_) {
    if (language.empty() || c->language() == language) out.push_back(c);
  }
  return out;
}

std::shared_ptr<CodeContext> ContextManager::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = contexts_.find(id);
  return it == contexts_.end() ? nullptr : it->second;
}

core::Result<void> ContextManager::remove(const std::string& id) {
  std::shared_ptr<CodeContext> ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = contexts_.find(id);
    if (it == contexts_.end()) return core::make_error(core::Errc::context_not_found, "context " + id + " not found");
    ctx = std::move(it->second);
    contexts_.erase(it);
    for (auto d = default_for_language_.begin(); d != default_for_language_.end();) {
      d = d->second == id ? default_for_language_.erase(d) : std::next(d);
    }
  }
  ctx.reset();  // the kernel shuts down here, outside the lock
  return {};
}

size_t ContextManager::remove_language(const std::string& language) {
  size_t n = 0;
  for (const auto& c : list(language)) {
    if (remove(c->id())) ++n;
  }
  return n;
}

core::Result<std::shared_ptr<exec::Execution>> ContextManager::run(const std::string& code, const std::string& id,
                                                                    const std::string& language,
                                                                    std::chrono::milliseconds timeout) {
  if (code.empty()) return core::make_error(core::Errc::invalid_argument, "field 'code' is required and must not be empty");
  if (timeout.count() < 0) return core::make_error(core::Errc::invalid_argument, "timeout must not be negative");
  std::shared_ptr<CodeContext> ctx;
  if (!id.empty()) {
    ctx = find(id);
    if (!ctx) return core::make_error(core::Errc::context_not_found, "context " + id + " not found");
  } else {
    std::lock_guard<std::mutex> creating(create_default_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto d = default_for_language_.find(language);
      if (d != default_for_language_.end()) ctx = contexts_.at(d->second);
    }
    if (!ctx) {
      auto created = create(language, {});
      if (!created) return created.error();
      ctx = *created;
      std::lock_guard<std::mutex> lock(mu_);
      default_for_language_[language] = ctx->id();
    }
  }
  auto execution = executions_->create("code");
  ctx->submit(execution, code, timeout);
  return execution;
}

void ContextManager::shutdown() {
  std::map<std::string, std::shared_ptr<CodeContext>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(contexts_);
    default_for_language_.clear();
  }
  all.clear();
}

}  // namespace execd::jupyter
