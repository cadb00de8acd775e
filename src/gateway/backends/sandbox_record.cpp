#include "gateway/backends/sandbox_record.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/fd_io.hpp"
#include "core/id.hpp"
#include "core/unique_fd.hpp"

namespace execd::gateway {

core::Result<SandboxRecord> SandboxRecord::load(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) return core::make_error(core::Errc::not_found, "no sandbox record at " + path);
  const auto j = nlohmann::json::parse(core::read_file(path), nullptr, false);
  if (!j.is_object()) return core::make_error(core::Errc::internal, "sandbox record " + path + " is not a JSON object");
  SandboxRecord r;
  try {
    r.sandbox_id = j.value("sandbox_id", "");
    r.pid = j.value("pid", 0);
    r.start_time = j.value("start_time", uint64_t{0});
    r.cgroup = j.value("cgroup", "");
    r.disk_bytes = j.value("disk_bytes", uint64_t{0});
    r.memory_bytes = j.value("memory_bytes", uint64_t{0});
    if (j.contains("labels") && j["labels"].is_object()) {
      const auto& l = j["labels"];
      InstanceLabels labels;
      labels.owner_replica = l.value("owner_replica", "");
      labels.owner_url = l.value("owner_url", "");
      labels.access_token = l.value("access_token", "");
      auto spec = spec_from_json(l.value("spec", "{}"));
      if (!spec) return core::make_error(core::Errc::internal, "sandbox record " + path + ": " + spec.error().message);
      labels.spec = std::move(*spec);
      labels.created_at = TimePoint(std::chrono::milliseconds(l.value("created_at_ms", int64_t{0})));
      if (l.contains("expires_at_ms") && l["expires_at_ms"].is_number_integer()) {
        labels.expires_at = TimePoint(std::chrono::milliseconds(l["expires_at_ms"].get<int64_t>()));
      }
      r.labels = std::move(labels);
    }
  } catch (const nlohmann::json::exception& e) {
    return core::make_error(core::Errc::internal, "sandbox record " + path + ": " + e.what());
  }
  return r;
}

core::Result<void> SandboxRecord::save(const std::string& path) const {
  nlohmann::json j = {{"sandbox_id", sandbox_id}, {"pid", pid},           {"start_time", start_time},
                      {"cgroup", cgroup},         {"disk_bytes", disk_bytes}, {"memory_bytes", memory_bytes}};
  if (labels) {
    const auto ms = [](TimePoint t) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    };
    nlohmann::json l = {{"owner_replica", labels->owner_replica}, {"owner_url", labels->owner_url},
                        {"access_token", labels->access_token},   {"spec", spec_to_json(labels->spec)},
                        {"created_at_ms", ms(labels->created_at)}};
    if (labels->expires_at) l["expires_at_ms"] = ms(*labels->expires_at);
    j["labels"] = std::move(l);
  }
  // Unique per writer: a relabel and the reaper's read may meet; two writers must not
  // share a temporary file.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + core::random_hex(4);
  core::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid() || !core::write_all(fd.get(), j.dump() + "\n") || ::fsync(fd.get()) != 0 ||
      ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    errno = err;
    return core::make_error(core::Errc::unavailable, "cannot write " + path + ": " + std::strerror(errno));
  }
  return {};
}

bool SandboxRecord::is_alive() const { return pid > 0 && process_start_time(pid) == start_time; }

std::optional<uint64_t> process_start_time(pid_t pid) {
  const std::string stat = core::read_file("/proc/" + std::to_string(pid) + "/stat");
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return std::nullopt;
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && in >> field; ++i) {
    if (i == 3 && (field == "Z" || field == "X")) return std::nullopt;
    if (i == 22) {
      try {
        return std::stoull(field);
      } catch (...) {
        return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

}  // namespace execd::gateway
