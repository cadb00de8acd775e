#include "jupyter/context_manager.hpp"

#include <filesystem>

#include "core/id.hpp"

namespace execd::jupyter {

ContextManager::ContextManager(std::shared_ptr<process::ChildReaper> reaper,
                               std::shared_ptr<exec::ExecutionRegistry> executions, Options options)
    : reaper_(std::move(reaper)), executions_(std::move(executions)), options_(std::move(options)),
      launcher_(std::make_shared<KernelLauncher>(
          reaper_, KernelLauncher::Options{options_.start_concurrency, options_.start_timeout, options_.runtime_dir,
                                           options_.isolator, options_.envs_file})) {
  if (options_.pool_size > 0) pool_thread_ = std::thread([this] { pool_work(); });
}

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

isolation::Limits ContextManager::default_limits() const {
  return options_.isolator ? options_.isolator->defaults() : isolation::Limits{};
}

core::Result<std::shared_ptr<CodeContext>> ContextManager::create(const std::string& language, const std::string& cwd) {
  return create(language, cwd, default_limits());
}

core::Result<std::shared_ptr<CodeContext>> ContextManager::create(const std::string& language, const std::string& cwd,
                                                                  const isolation::Limits& limits) {
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
  const bool isolated = isolation::ExecutionGuard::needed(limits);
  if (isolated && !options_.isolator) {
    return core::make_error(core::Errc::invalid_argument, "isolation and limits are not available in this daemon");
  }
  if (isolated) {
    if (auto ok = options_.isolator->check(limits); !ok) return ok.error();
  }
  // A warm kernel serves a context in the daemon's directory; a cwd needs its own start.
  // The pool holds only unisolated kernels: an isolated request never gets one of them.
  std::unique_ptr<Kernel> kernel = cwd.empty() && !isolated ? take_warm(language) : nullptr;
  if (!kernel) {
    auto cold = launcher_->start(*spec, cwd, limits);
    if (!cold) return cold.error();
    kernel = std::move(*cold);
  }
  auto ctx = std::make_shared<CodeContext>(core::new_id(), *spec, cwd, launcher_, std::move(kernel), limits);
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

std::unique_ptr<Kernel> ContextManager::take_warm(const std::string& language) {
  if (options_.pool_size == 0) return nullptr;
  std::unique_ptr<Kernel> k;
  std::lock_guard<std::mutex> lock(pool_mu_);
  auto& warm = pool_[language];
  while (!warm.empty() && !k) {
    k = std::move(warm.front());
    warm.pop_front();
    if (k->is_dead()) k.reset();
  }
  to_fill_.push_back(language);
  pool_cv_.notify_all();
  return k;
}

void ContextManager::pool_work() {
  std::unique_lock<std::mutex> lock(pool_mu_);
  for (;;) {
    pool_cv_.wait(lock, [&] { return pool_stop_ || !to_fill_.empty(); });
    if (pool_stop_) return;
    const std::string language = to_fill_.front();
    to_fill_.pop_front();
    while (!pool_stop_ && pool_[language].size() < options_.pool_size) {
      lock.unlock();
      auto spec = spec_for(language);
      // Level none without limits, always: see create().
      auto k = spec ? launcher_->start(*spec, {}, isolation::Limits{})
                    : core::Result<std::unique_ptr<Kernel>>(spec.error());
      lock.lock();
      if (!k) break;  // the next take asks again
      pool_[language].push_back(std::move(*k));
    }
  }
}

void ContextManager::shutdown() {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    pool_stop_ = true;
  }
  pool_cv_.notify_all();
  if (pool_thread_.joinable()) pool_thread_.join();
  std::vector<std::shared_ptr<CodeContext>> contexts;
  std::vector<std::unique_ptr<Kernel>> warm;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, c] : contexts_) contexts.push_back(std::move(c));
    contexts_.clear();
    default_for_language_.clear();
  }
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    for (auto& [language, kernels] : pool_) {
      for (auto& k : kernels) warm.push_back(std::move(k));
    }
    pool_.clear();
  }
  // Every kernel is asked to shut down at once (each may take up to a second before it
  // is killed), so stopping the daemon does not take a second per kernel.
  std::vector<std::thread> stopping;
  for (auto& c : contexts) stopping.emplace_back([c = std::move(c)]() mutable { c.reset(); });
  for (auto& k : warm) stopping.emplace_back([k = std::move(k)]() mutable { k.reset(); });
  for (auto& t : stopping) t.join();
}

}  // namespace execd::jupyter
