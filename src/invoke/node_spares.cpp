#include "invoke/node_spares.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "commands/command_runner.hpp"
#include "isolation/child_steps.hpp"

namespace execd::invoke {

namespace {

constexpr const char* kSparePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::chrono::seconds kSweepEvery{1};

bool is_typescript(size_t f) {
  return f / 2 == 1;
}
bool is_isolated(size_t f) {
  return f % 2 == 1;
}

// Level-process spares are started with no_new_privs: only a process can set it on
// itself, so it cannot be added when one is taken.
const isolation::ChildSteps kNoNewPrivs{{}, {}, true};

int apply_steps(const void* arg, const char** failed_step) noexcept {
  return static_cast<const isolation::ChildSteps*>(arg)->apply(failed_step);
}

}  // namespace

bool NodeSpares::read_at_start(std::string_view key) {
  for (std::string_view prefix : {"NODE_", "UV_", "OPENSSL_", "LC_"}) {
    if (key.substr(0, prefix.size()) == prefix) return true;
  }
  return key == "LANG" || key == "LANGUAGE";
}

std::vector<std::string> NodeSpares::startup_variables(const std::vector<std::string>& env) {
  std::vector<std::string> out;
  for (const auto& kv : env) {
    const auto eq = kv.find('=');
    if (eq != std::string::npos && read_at_start(std::string_view(kv).substr(0, eq))) out.push_back(kv);
  }
  std::sort(out.begin(), out.end());
  return out;
}

size_t NodeSpares::index(Language language, isolation::Level level) {
  return (language == Language::typescript ? 2 : 0) + (level == isolation::Level::none ? 0 : 1);
}

NodeSpares::NodeSpares(std::shared_ptr<process::ChildReaper> reaper, Options options)
    : reaper_(std::move(reaper)), options_(std::move(options)), node_path_(process::find_in_path(options_.node)) {
  starter_ = std::thread([this] { run_starter(); });
}

NodeSpares::~NodeSpares() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  starter_.join();
  std::lock_guard lock(mu_);
  for (auto& flavour : flavours_) {
    for (auto& spare : flavour.ready) discard(spare);
    flavour.ready.clear();
  }
}

std::vector<std::string> NodeSpares::startup_env_of(size_t f) const {
  return startup_variables(is_isolated(f) ? commands::isolated_environment(options_.envs_file, {})
                                          : commands::command_environment(options_.envs_file, {}));
}

core::Result<NodeSpares::Spare> NodeSpares::take(Language language, isolation::Level level,
                                                 const std::vector<std::string>& env) {
  if (language == Language::python || level == isolation::Level::namespace_) {
    return core::make_error(core::Errc::invalid_argument,
                            "node spares serve javascript and typescript at level none or process");
  }
  if (language == Language::typescript && options_.typescript_module_dir.empty()) {
    return core::make_error(core::Errc::unavailable, "no typescript module");
  }
  const size_t f = index(language, level);
  const auto wanted = startup_variables(env);
  std::unique_lock lock(mu_);
  auto& flavour = flavours_[f];
  if (!flavour.used) {
    flavour.used = true;
    cv_.notify_all();
    return core::make_error(core::Errc::unavailable,
                            "the first " + std::string(to_string(language)) +
                                " invocation at this level starts cold; spares are started for the next ones");
  }
  while (!flavour.ready.empty()) {
    Spare spare = std::move(flavour.ready.front());
    flavour.ready.pop_front();
    cv_.notify_all();  // start its replacement
    if (ended_idle(spare)) {
      flavour.not_before = std::chrono::steady_clock::now() + options_.retry_after;
      continue;
    }
    if (spare.startup_env == wanted) return spare;
    if (startup_env_of(f) != spare.startup_env) {  // started before the environment changed
      discard(spare);
      continue;
    }
    // The request's own variables differ (NODE_OPTIONS in its envs, say): this spare
    // stays for the next invocation.
    flavour.ready.push_front(std::move(spare));
    std::string names;
    for (const auto& kv : wanted) names += (names.empty() ? "" : ", ") + kv.substr(0, kv.find('='));
    return core::make_error(core::Errc::unavailable,
                            "the environment's startup variables (" + (names.empty() ? std::string("none") : names) +
                                ") differ from those the node spares started with; node reads them only at start");
  }
  return core::make_error(core::Errc::unavailable, "no node spare was ready (all taken or starting)");
}

std::vector<pid_t> NodeSpares::idle() const {
  std::lock_guard lock(mu_);
  std::vector<pid_t> out;
  for (const auto& flavour : flavours_) {
    for (const auto& spare : flavour.ready) out.push_back(spare.child.pid);
  }
  return out;
}

core::Result<void> NodeSpares::start_one(size_t f, Spare& spare) {
  spare.channel.reset(::memfd_create("execd-invoke-result", MFD_CLOEXEC));
  if (!spare.channel.valid()) {
    return core::make_error(core::Errc::unavailable,
                            std::string("cannot make the result channel: ") + std::strerror(errno));
  }
  spare.startup_env = startup_env_of(f);
  process::SpawnOptions so;
  so.argv = node_spare_argv(is_typescript(f) ? Language::typescript : Language::javascript, node_path_);
  so.env = spare.startup_env;
  so.env.emplace_back(kSparePath);
  if (is_typescript(f)) so.env.push_back("EXECD_TYPESCRIPT_MODULE=" + options_.typescript_module_dir);
  so.cwd = "/";
  so.stdin_pipe = true;
  so.pass_fds = {spare.channel.get()};
  if (is_isolated(f)) {
    so.child_setup = &apply_steps;
    so.child_setup_arg = &kNoNewPrivs;
  }
  auto child = reaper_->spawn(so);
  if (!child) return child.error();
  spare.child = std::move(child).value();
  return {};
}

bool NodeSpares::ended_idle(const Spare& spare) {
  int status = 0;
  if (::waitpid(spare.child.pid, &status, WNOHANG) != spare.child.pid) return false;
  reaper_->disown(spare.child.pid);
  spdlog::warn("invoke: node spare {} ended while idle ({} {})", spare.child.pid,
               WIFSIGNALED(status) ? "signal" : "exit status",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  return true;
}

bool NodeSpares::reap_dead(Flavour& flavour) {
  const auto before = flavour.ready.size();
  std::erase_if(flavour.ready, [this](const Spare& spare) { return ended_idle(spare); });
  return flavour.ready.size() != before;
}

void NodeSpares::discard(Spare& spare) {
  if (spare.child.pid <= 0) return;
  ::kill(-spare.child.pid, SIGKILL);
  ::kill(spare.child.pid, SIGKILL);
  ::waitpid(spare.child.pid, nullptr, 0);
  reaper_->disown(spare.child.pid);
  spare.child.pid = -1;
}

void NodeSpares::run_starter() {
  std::unique_lock lock(mu_);
  auto last_sweep = std::chrono::steady_clock::now();
  while (!stopping_) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_sweep >= kSweepEvery) {
      last_sweep = now;
      for (auto& flavour : flavours_) {
        if (reap_dead(flavour)) flavour.not_before = now + options_.retry_after;
      }
    }
    // The flavour that needs a spare and may have one now; else sleep until one may.
    std::optional<size_t> next;
    auto wake = last_sweep + kSweepEvery;
    for (size_t f = 0; f < kFlavours; ++f) {
      const auto& flavour = flavours_[f];
      if (!flavour.used || flavour.ready.size() >= options_.per_flavour) continue;
      if (flavour.not_before <= now) {
        next = f;
        break;
      }
      wake = std::min(wake, flavour.not_before);
    }
    if (!next) {
      cv_.wait_until(lock, wake);
      continue;
    }
    lock.unlock();
    Spare spare;
    auto started = start_one(*next, spare);
    lock.lock();
    if (!started) {
      spdlog::warn("invoke: cannot start a node spare: {}", started.error().message);
      flavours_[*next].not_before = std::chrono::steady_clock::now() + options_.retry_after;
      continue;
    }
    if (stopping_) {
      discard(spare);
      break;
    }
    flavours_[*next].ready.push_back(std::move(spare));
  }
}

}  // namespace execd::invoke
