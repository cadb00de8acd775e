#include "exec/execution_registry.hpp"

#include <algorithm>

#include "core/id.hpp"
#include "core/json_parse.hpp"

namespace execd::exec {

ExecutionRegistry::ExecutionRegistry(EventLog::Options log_options, std::chrono::seconds retention)
    : log_options_(std::move(log_options)), retention_(retention) {}

std::shared_ptr<Execution> ExecutionRegistry::create(const std::string& kind, const std::string& id) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_sweep_ > std::chrono::seconds(1)) sweep();
  std::lock_guard<std::mutex> lock(mu_);
  std::string key = id;
  if (key.empty() || by_id_.count(key) != 0) key = core::new_id();
  auto e = std::make_shared<Execution>(key, kind, log_options_);
  // Weak: the log belongs to the execution; the closure must not keep it alive.
  e->log()->set_on_close([weak = std::weak_ptr<Execution>(e), observer = observer_, kind, started = now](const Event& terminal) {
    const auto outcome = ExecutionOutcome::from_terminal(terminal);
    if (observer) observer(kind, outcome, std::chrono::steady_clock::now() - started);
    if (auto self = weak.lock()) self->finish(outcome, terminal);
  });
  by_id_[key] = Entry{e, {}};
  return e;
}

void ExecutionRegistry::set_finish_observer(FinishObserver observer) {
  std::lock_guard<std::mutex> lock(mu_);
  observer_ = std::move(observer);
}

std::shared_ptr<Execution> ExecutionRegistry::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.execution;
}

void ExecutionRegistry::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  by_id_.erase(id);
}

size_t ExecutionRegistry::sweep() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  last_sweep_ = now;
  size_t evicted = 0;
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    Entry& entry = it->second;
    if (entry.execution->log()->is_closed()) {
      if (entry.closed_seen == std::chrono::steady_clock::time_point{}) entry.closed_seen = now;
      if (now - entry.closed_seen >= retention_) {
        it = by_id_.erase(it);
        ++evicted;
        continue;
      }
    }
    ++it;
  }
  return evicted;
}

core::Result<std::vector<std::shared_ptr<Execution>>> ExecutionRegistry::list(const ListQuery& q) const {
  std::vector<std::shared_ptr<Execution>> all;
  std::shared_ptr<Execution> after;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.reserve(by_id_.size());
    for (const auto& [id, entry] : by_id_) all.push_back(entry.execution);
    if (!q.after.empty()) {
      auto it = by_id_.find(q.after);
      if (it == by_id_.end()) {
        return core::make_error(core::Errc::invalid_argument, "query parameter 'after': no retained execution " + q.after.substr(0, 64));
      }
      after = it->second.execution;
    }
  }
  // Newest first; the id breaks ties so pages never overlap or skip.
  auto newer = [](const std::shared_ptr<Execution>& a, const std::shared_ptr<Execution>& b) {
    return a->started_at() != b->started_at() ? a->started_at() > b->started_at() : a->id() > b->id();
  };
  std::sort(all.begin(), all.end(), newer);
  std::vector<std::shared_ptr<Execution>> out;
  for (const auto& e : all) {
    if (out.size() >= q.limit) break;
    if (after && !newer(after, e)) continue;
    if (!q.kind.empty() && e->kind() != q.kind) continue;
    if (!q.status.empty()) {
      const auto o = e->outcome();
      if ((o ? o->status() : std::string("running")) != q.status) continue;
    }
    out.push_back(e);
  }
  return out;
}

ExecutionOutcome ExecutionOutcome::from_terminal(const Event& terminal) {
  ExecutionOutcome o;
  o.finished_at = std::chrono::system_clock::now();
  if (terminal.type.empty()) {
    o.reason = "abandoned";
    return o;
  }
  auto parsed = core::parse_json(terminal.json);
  const nlohmann::json doc = parsed && parsed->is_object() ? std::move(parsed).value() : nlohmann::json::object();
  const nlohmann::json& fields = terminal.type == "invoke_result" && doc.contains("metrics") ? doc["metrics"] : doc;
  for (const char* key : {"duration_ms", "cpu_time_ms", "peak_memory_mb", "io_read_bytes", "io_write_bytes", "exit_code"}) {
    if (fields.contains(key)) o.metrics[key] = fields[key];
    else if (doc.contains(key)) o.metrics[key] = doc[key];
  }
  if (terminal.type == "execution_complete") {
    o.reason = "success";
  } else if (terminal.type == "invoke_result") {
    const std::string status = doc.value("status", "failed");
    o.reason = status == "failed" ? "failure" : status;
  } else if (doc.contains("killed")) {
    o.reason = "killed";
  } else {
    o.reason = "failure";
    const auto error = doc.value("error", nlohmann::json::object());
    const std::string ename = error.is_object() ? error.value("ename", "") : "";
    // Commands say "timeout after N ms (...)" in their traceback; cells in their evalue.
    const auto says_timeout = [](const nlohmann::json& v) {
      return v.is_string() && v.get<std::string>().find("timeout") != std::string::npos;
    };
    if (ename == "KernelKilledByLimit") {
      o.reason = "killed";
    } else if (ename == "KeyboardInterrupt") {
      o.reason = "interrupted";
    } else if (ename == "DeadKernelError") {
      o.reason = "kernel_died";
    } else if (error.is_object()) {
      const auto tb = error.value("traceback", nlohmann::json::array());
      if (says_timeout(error.value("evalue", nlohmann::json())) || (tb.is_array() && !tb.empty() && says_timeout(tb.front()))) {
        o.reason = "timeout";
      }
    }
  }
  return o;
}

std::string ExecutionOutcome::status() const {
  if (reason == "success" || reason == "killed" || reason == "timeout") return reason;
  if (reason == "abandoned") return "ended";
  return "failed";
}

size_t ExecutionRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_id_.size();
}

}  // namespace execd::exec
