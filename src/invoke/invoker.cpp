#include "invoke/invoker.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <system_error>

#include <spdlog/spdlog.h>

#include "core/bytes.hpp"
#include "core/id.hpp"
#include "core/json_parse.hpp"
#include "exec/event.hpp"
#include "invoke/artifact_scan.hpp"
#include "invoke/zygote_run.hpp"
#include "process/proc_table.hpp"

namespace execd::invoke {

namespace {

constexpr std::chrono::seconds kSweepEvery{60};

/// stdout and stderr as the handler wrote them (lines, each ended by "\n"), at most
/// `cap` bytes each.
struct Streams {
  std::string out, err;
  bool out_cut = false, err_cut = false;
};

Streams collect_streams(exec::EventLog& log, uint64_t cap) {
  Streams s;
  exec::Cursor cursor;
  for (;;) {
    auto batch = log.read(cursor, 1000, std::chrono::milliseconds(0));
    if (batch.events.empty()) break;
    for (const auto& e : batch.events) {
      const bool is_err = e.type == "stderr";
      if (!is_err && e.type != "stdout") continue;
      if (is_err ? s.err_cut : s.out_cut) continue;  // past the cap: not even parsed
      auto parsed = core::parse_json(e.json);
      if (!parsed || !parsed->contains("text") || !(*parsed)["text"].is_string()) continue;
      std::string line = (*parsed)["text"].get<std::string>();
      if (line == "\n") line.clear();  // an empty line is sent as "\n" (LineSplitter)
      auto& text = is_err ? s.err : s.out;
      auto& cut = is_err ? s.err_cut : s.out_cut;
      if (text.size() + line.size() + 1 > cap) {
        text.append(line, 0, cap > text.size() ? cap - text.size() : 0);
        cut = true;
        continue;
      }
      text += line;
      text += '\n';
    }
  }
  return s;
}

nlohmann::json error_json(const std::string& type, const std::string& message, const std::string& traceback = {}) {
  return {{"type", type}, {"message", message}, {"traceback", traceback}};
}

}  // namespace

core::Result<StartMode> parse_start_mode(std::string_view text) {
  if (text == "warm") return StartMode::warm;
  if (text == "cold") return StartMode::cold;
  return core::make_error(core::Errc::invalid_argument, "field 'start' must be warm or cold, got '" + std::string(text.substr(0, 40)) + "'");
}

struct Invoker::Job {
  commands::CommandOutcome outcome;
  core::UniqueFd channel;  // the memfd the bootstrap writes its result to
  std::string work_dir;
  Language language = Language::python;
  bool warm = false;
  std::string cold_reason;  // a warm start was asked for and not possible: why
  std::atomic<bool> interrupted{false};  // set by the execution's interrupter, any thread
};

Invoker::Invoker(std::shared_ptr<commands::CommandRunner> runner, std::shared_ptr<process::Reactor> reactor,
                 std::shared_ptr<process::ChildReaper> reaper, std::shared_ptr<exec::ExecutionRegistry> executions,
                 Options options)
    : runner_(std::move(runner)), reactor_(std::move(reactor)), executions_(std::move(executions)),
      options_(std::move(options)) {
  if (options_.warm_start) {
    python_zygote_ = std::make_unique<Zygote>(reactor_, reaper, Zygote::Options{options_.runtimes.python});
    if (options_.node_spares > 0) {
      NodeSpares::Options o;
      o.node = options_.runtimes.node;
      o.typescript_module_dir = options_.runtimes.typescript_module_dir;
      o.envs_file = options_.envs_file;
      o.per_flavour = options_.node_spares;
      node_spares_ = std::make_unique<NodeSpares>(std::move(reaper), std::move(o));
    }
  }
  worker_ = std::thread([this] { run_worker(); });
}

Invoker::~Invoker() {
  {
    std::lock_guard lock(queue_->mu);
    queue_->stopping = true;
  }
  queue_->cv.notify_all();
  worker_.join();  // after the jobs queued so far are done
  python_zygote_.reset();  // its children die with it
  node_spares_.reset();    // the idle spares are killed; taken ones are the runner's
}

core::Result<std::shared_ptr<exec::Execution>> Invoker::start(InvokeSpec spec, const isolation::Limits& limits) {
  if (spec.code.empty()) return core::make_error(core::Errc::invalid_argument, "field 'code' is required and must not be empty");
  if (spec.timeout.count() < 0) return core::make_error(core::Errc::invalid_argument, "field 'timeout' must not be negative");
  auto argv = bootstrap_argv(spec.language, options_.runtimes);
  if (!argv) return argv.error();
  sweep_work_dirs();

  std::error_code ec;
  std::filesystem::create_directories(options_.work_base, ec);
  auto job = std::make_shared<Job>();
  job->language = spec.language;
  job->work_dir = options_.work_base + "/inv-" + core::random_hex(8);
  if (::mkdir(job->work_dir.c_str(), 0700) != 0) {
    return core::make_error(core::Errc::unavailable, "cannot make the invocation's working directory " + job->work_dir + ": " +
                                                         std::strerror(errno));
  }
  job->channel.reset(::memfd_create("execd-invoke-result", MFD_CLOEXEC));
  if (!job->channel.valid()) {
    std::filesystem::remove_all(job->work_dir, ec);
    return core::make_error(core::Errc::unavailable, std::string("cannot make the result channel: ") + std::strerror(errno));
  }

  if (spec.start == StartMode::warm) {
    auto warm = start_warm(spec, limits, job);
    if (warm) return warm;
    job->cold_reason = warm.error().message;
    spdlog::debug("invoke: starting cold: {}", job->cold_reason);
  }

  commands::CommandSpec cs;
  cs.argv = std::move(argv).value();
  cs.pass_fds = {job->channel.get()};
  cs.kind = "invocation";
  cs.end_group_on_exit = true;
  cs.cwd = job->work_dir;
  cs.timeout = spec.timeout;
  cs.envs = std::move(spec.envs);
  if (spec.language == Language::typescript) cs.envs["EXECD_TYPESCRIPT_MODULE"] = options_.runtimes.typescript_module_dir;
  cs.stdin_data = exec::dump_json({{"code", std::move(spec.code)}, {"event", std::move(spec.event)}});
  cs.on_finish = finisher(job);
  auto cmd = runner_->start(std::move(cs), limits);
  if (!cmd) {
    std::filesystem::remove_all(job->work_dir, ec);
    return cmd.error();
  }
  const auto& execution = (*cmd)->execution();
  interrupt_as_command(execution, job);
  return execution;
}

void Invoker::interrupt_as_command(const std::shared_ptr<exec::Execution>& execution, const std::shared_ptr<Job>& job) {
  execution->set_interrupter(
      [weak_job = std::weak_ptr<Job>(job), weak_runner = std::weak_ptr<commands::CommandRunner>(runner_), id = execution->id()] {
        return interrupt_with(weak_job, [&] {
          auto runner = weak_runner.lock();
          return runner ? runner->interrupt(id) : core::make_error(core::Errc::conflict, "the daemon is stopping");
        });
      });
}

std::function<void(commands::CommandOutcome)> Invoker::finisher(const std::shared_ptr<Job>& job) {
  return [weak = std::weak_ptr<Queue>(queue_), job](commands::CommandOutcome outcome) {
    auto queue = weak.lock();
    if (queue) {
      std::lock_guard lock(queue->mu);
      if (queue->stopping) queue.reset();
    }
    if (!queue) {
      outcome.execution->log()->close(exec::events::error("InvocationError", "the daemon is stopping", {}));
      return;
    }
    job->outcome = std::move(outcome);
    {
      std::lock_guard lock(queue->mu);
      queue->jobs.push_back(job);
    }
    queue->cv.notify_one();
  };
}

core::Result<std::shared_ptr<exec::Execution>> Invoker::start_warm(InvokeSpec& spec, const isolation::Limits& limits,
                                                                   const std::shared_ptr<Job>& job) {
  if (!options_.warm_start) return core::make_error(core::Errc::unavailable, "warm starts are off (--warm-invoke off)");
  if (limits.level == isolation::Level::namespace_) {
    return core::make_error(core::Errc::unavailable,
                            "namespace isolation starts the handler inside bwrap's own process tree, which a warm start cannot enter");
  }
  if (spec.language == Language::python) return start_forked(spec, limits, job);
  if (!node_spares_) return core::make_error(core::Errc::unavailable, "node spares are off (--node-spares 0)");
  return start_spare(spec, limits, job);
}

core::Result<std::shared_ptr<exec::Execution>> Invoker::start_spare(InvokeSpec& spec, const isolation::Limits& limits,
                                                                    const std::shared_ptr<Job>& job) {
  const bool guarded = isolation::ExecutionGuard::needed(limits);
  const auto& isolator = runner_->isolator();
  if (guarded && !isolator) return core::make_error(core::Errc::unavailable, "no isolation service");
  // The environment and working directory a cold start would be given at exec.
  if (spec.language == Language::typescript) spec.envs["EXECD_TYPESCRIPT_MODULE"] = options_.runtimes.typescript_module_dir;
  process::SpawnOptions so;
  so.argv = {options_.runtimes.node};
  so.env = limits.level == isolation::Level::none ? commands::command_environment(options_.envs_file, spec.envs)
                                                 : commands::isolated_environment(options_.envs_file, spec.envs);
  so.cwd = job->work_dir;
  // Taken first: no cgroup is made for an invocation that starts cold. The isolator adds
  // only PATH and HOME, which node does not read at start, so the environment's startup
  // variables are known already.
  auto spare = node_spares_->take(spec.language, limits.level, so.env);
  if (!spare) return spare.error();
  const pid_t pid = spare->child.pid;
  auto execution = executions_->create("invocation");
  std::unique_ptr<isolation::ExecutionGuard> guard;
  if (guarded) {
    auto made = isolation::ExecutionGuard::make(*isolator, limits, so, "c-" + execution->id());
    // Its cgroup and rlimits, before the request (and so any user code) reaches it.
    const auto* steps = static_cast<const isolation::ChildSteps*>(so.child_setup_arg);
    auto applied = !made ? core::Result<void>(made.error()) : steps != nullptr ? steps->apply_to(pid) : core::Result<void>();
    if (!applied) {
      // Not set up: no invocation may use it. Killed and reaped before the guard ends
      // (which would otherwise reap it as a killed member of its cgroup).
      node_spares_->discard(*spare);
      executions_->remove(execution->id());
      spdlog::warn("invoke: a node spare could not be set up: {}", applied.error().message);
      return applied.error();
    }
    guard = std::move(made).value();
  }
  commands::CommandSpec cs;
  cs.kind = "invocation";
  cs.end_group_on_exit = true;
  cs.timeout = spec.timeout;
  cs.stdin_data = exec::dump_json({{"code", std::move(spec.code)},
                                   {"event", std::move(spec.event)},
                                   {"env", std::move(so.env)},
                                   {"cwd", so.cwd.empty() ? job->work_dir : so.cwd}});
  // What it used while starting (CPU in 10 ms ticks) is not the invocation's.
  if (auto used = process::cpu_time_with_children_ms(pid)) cs.usage_before.cpu = std::chrono::milliseconds(*used);
  if (auto io = process::io_bytes(pid)) {
    cs.usage_before.io_read_bytes = io->read;
    cs.usage_before.io_write_bytes = io->written;
  }
  cs.on_finish = finisher(job);
  job->channel = std::move(spare->channel);
  job->warm = true;
  runner_->adopt(execution, std::move(cs), std::move(spare->child), std::move(guard));
  interrupt_as_command(execution, job);
  return execution;
}

core::Result<std::shared_ptr<exec::Execution>> Invoker::start_forked(InvokeSpec& spec, const isolation::Limits& limits,
                                                                     const std::shared_ptr<Job>& job) {
  if (!python_zygote_) return core::make_error(core::Errc::unavailable, "warm starts are off (--warm-invoke off)");
  const bool guarded = isolation::ExecutionGuard::needed(limits);
  const auto& isolator = runner_->isolator();
  if (guarded && !isolator) return core::make_error(core::Errc::unavailable, "no isolation service");
  if (auto ready = python_zygote_->ready(); !ready) return ready.error();
  auto execution = executions_->create("invocation");
  ZygoteRun::Setup setup;
  setup.execution = execution;
  // The environment a cold start would get at this level (never the daemon's own at
  // process level), and the same plan: cgroup made and limited, rlimits, no_new_privs.
  process::SpawnOptions so;
  so.argv = {options_.runtimes.python};
  so.env = limits.level == isolation::Level::none ? commands::command_environment(options_.envs_file, spec.envs)
                                                 : commands::isolated_environment(options_.envs_file, spec.envs);
  so.cwd = job->work_dir;
  if (guarded) {
    auto guard = isolation::ExecutionGuard::make(*isolator, limits, so, "c-" + execution->id());
    if (!guard) {
      executions_->remove(execution->id());
      return guard.error();
    }
    setup.guard = std::move(guard).value();
    setup.steps = static_cast<const isolation::ChildSteps*>(so.child_setup_arg);
  }
  setup.cwd = so.cwd.empty() ? job->work_dir : so.cwd;
  setup.env = std::move(so.env);
  setup.stdin_data = exec::dump_json({{"code", spec.code}, {"event", spec.event}});
  setup.result_fd = job->channel.get();
  setup.timeout = spec.timeout;
  setup.kill_grace = options_.kill_grace;
  job->warm = true;
  setup.on_finish = finisher(job);
  auto run = ZygoteRun::start(*python_zygote_, *reactor_, std::move(setup));
  if (!run) {
    job->warm = false;
    executions_->remove(execution->id());
    return run.error();
  }
  execution->set_interrupter([weak_job = std::weak_ptr<Job>(job), weak_run = std::weak_ptr<ZygoteRun>(*run)] {
    return interrupt_with(weak_job, [&] {
      auto r = weak_run.lock();
      return r ? r->interrupt() : core::make_error(core::Errc::conflict, "the invocation is not running");
    });
  });
  return execution;
}

template <typename Signal>
core::Result<void> Invoker::interrupt_with(const std::weak_ptr<Job>& weak_job, Signal&& signal) {
  auto job = weak_job.lock();
  if (!job) return core::make_error(core::Errc::conflict, "the invocation is not running");
  // Marked first: the process may end (and be finished on the worker) as soon as it is
  // signalled.
  const bool was = job->interrupted.exchange(true);
  auto sent = signal();
  if (!sent && !was) job->interrupted = false;
  return sent;
}

void Invoker::run_worker() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(queue_->mu);
      queue_->cv.wait(lock, [this] { return queue_->stopping || !queue_->jobs.empty(); });
      if (queue_->jobs.empty()) return;  // stopping, nothing left
      job = std::move(queue_->jobs.front());
      queue_->jobs.pop_front();
    }
    finish(*job);
  }
}

void Invoker::finish(Job& job) {
  const auto& outcome = job.outcome;
  auto& log = *outcome.execution->log();
  nlohmann::json doc;
  doc["id"] = outcome.execution->id();
  doc["language"] = to_string(job.language);
  doc["start"] = job.warm ? "warm" : "cold";
  doc["cold_reason"] = job.cold_reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(job.cold_reason);

  // The result channel: one JSON document, or nothing when the process ended first.
  std::optional<nlohmann::json> channel;
  std::optional<nlohmann::json> channel_error;
  struct stat st {};
  if (::fstat(job.channel.get(), &st) == 0 && st.st_size > 0) {
    if (static_cast<uint64_t>(st.st_size) > options_.max_return_bytes) {
      channel_error = error_json("ReturnTooLarge", "the encoded return value is " + std::to_string(st.st_size) +
                                                       " bytes, over the limit of " + std::to_string(options_.max_return_bytes));
    } else {
      std::string bytes(static_cast<size_t>(st.st_size), '\0');
      const ssize_t n = ::pread(job.channel.get(), bytes.data(), bytes.size(), 0);
      auto parsed = n == st.st_size ? core::parse_json(bytes) : core::Result<nlohmann::json>(core::make_error(core::Errc::internal, "short read"));
      if (parsed && parsed->is_object() && parsed->contains("ok")) {
        channel = std::move(parsed).value();
      } else {
        channel_error = error_json("BrokenResult", "the result channel held no valid result document (was descriptor 3 written to by the handler?)");
      }
    }
  }
  job.channel.reset();

  std::string status;
  nlohmann::json error = nullptr;
  nlohmann::json value = nullptr;
  const bool signalled = outcome.exit_code == -1;
  const bool returned = channel && (*channel)["ok"] == true && outcome.exit_code == 0;
  // Interrupted means it was stopped: a handler that returned anyway (it caught the
  // KeyboardInterrupt, or the request came as it ended) is reported as it ended.
  const bool interrupted = job.interrupted && !outcome.timed_out && !outcome.limit_hit && !returned;
  if (outcome.timed_out) {
    status = "timeout";
    error = error_json("Timeout", outcome.error);
  } else if (interrupted) {
    status = "killed";
    std::string how = outcome.error.empty() ? "exit status 0" : outcome.error;
    std::string traceback;
    if (channel && channel->contains("error") && (*channel)["error"].is_object()) {
      const auto& e = (*channel)["error"];
      how += " after " + e.value("type", std::string("an error")) + " in the handler";
      traceback = e.value("traceback", std::string());
    }
    error = error_json("Interrupted", "the invocation was interrupted (" + how + ")", traceback);
  } else if (outcome.limit_hit || signalled) {
    status = "killed";
    error = error_json("Killed", outcome.error);
  } else if (channel_error) {
    status = "failed";
    error = *channel_error;
  } else if (channel && (*channel)["ok"] == true && outcome.exit_code == 0) {
    status = "success";
    value = (*channel)["value"];
  } else if (channel && (*channel)["ok"] == false && channel->contains("error")) {
    status = "failed";
    error = (*channel)["error"];
  } else {
    status = "failed";
    error = error_json(channel ? "ExitStatus" : "NoResult",
                       channel ? "the handler returned but the process ended with " + outcome.error
                               : "the process ended (" + (outcome.error.empty() ? std::string("exit status 0") : outcome.error) +
                                     ") before the handler returned");
  }
  doc["status"] = status;
  doc["return_value"] = value;
  doc["error"] = error;
  doc["exit_code"] = outcome.exit_code;
  doc["interrupted"] = interrupted;

  const auto streams = collect_streams(log, options_.max_stream_bytes);
  doc["stdout"] = streams.out;
  doc["stderr"] = streams.err;
  doc["truncated"] = {{"stdout", streams.out_cut}, {"stderr", streams.err_cut}};

  nlohmann::json metrics = nlohmann::json::object();
  for (const char* key : {"duration_ms", "cpu_time_ms", "peak_memory_mb", "io_read_bytes", "io_write_bytes"}) {
    if (outcome.accounting.contains(key)) metrics[key] = outcome.accounting[key];
  }
  doc["metrics"] = metrics;
  if (outcome.accounting.contains("killed")) doc["killed"] = outcome.accounting["killed"];

  nlohmann::json artifacts = nlohmann::json::array();
  for (const auto& a : scan_artifacts(job.work_dir, options_.max_artifacts, options_.artifact_hash_budget)) {
    artifacts.push_back({{"path", a.path},
                         {"size", a.size},
                         {"sha256", a.sha256.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.sha256)},
                         {"download", "/files/download?path=" + core::percent_encode(a.path)}});
  }
  doc["artifacts"] = std::move(artifacts);
  doc["work_dir"] = job.work_dir;
  log.close(exec::events::custom(kResultEvent, std::move(doc)));
}

core::Result<nlohmann::json> Invoker::wait(const exec::Execution& execution, std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  // Only the last event matters: start at the newest one there is (one already closed
  // log still hands back its terminal event), not at the first of a long output.
  const uint64_t newest = execution.log()->last_seq();
  exec::Cursor cursor{newest > 0 ? newest - 1 : 0};
  std::optional<exec::Event> last;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto batch = execution.log()->read(cursor, 1000, std::max(left, std::chrono::milliseconds(0)));
    if (!batch.events.empty()) last = std::move(batch.events.back());
    if (batch.end) break;
    if (left.count() <= 0) return core::make_error(core::Errc::unavailable, "the invocation has not ended yet");
  }
  if (!last || last->type != kResultEvent) {
    return core::make_error(core::Errc::internal, "the invocation ended without a result document");
  }
  auto doc = core::parse_json(last->json);
  if (!doc) return doc.error();
  doc->erase("type");
  doc->erase("timestamp");
  return doc;
}

void Invoker::sweep_work_dirs() {
  {
    std::lock_guard lock(sweep_mu_);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_sweep_ < kSweepEvery) return;
    last_sweep_ = now;
  }
  std::error_code ec;
  const auto cutoff = std::filesystem::file_time_type::clock::now() - options_.retention;
  for (const auto& entry : std::filesystem::directory_iterator(options_.work_base, ec)) {
    if (entry.path().filename().string().rfind("inv-", 0) != 0) continue;
    std::error_code time_ec;
    if (entry.last_write_time(time_ec) < cutoff && !time_ec) std::filesystem::remove_all(entry.path(), time_ec);
  }
}

}  // namespace execd::invoke
