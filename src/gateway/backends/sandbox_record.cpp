#include "gateway/backends/sandbox_record.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/fd_io.hpp"
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
  } catch (const nlohmann::json::exception& e) {
    return core::make_error(core::Errc::internal, "sandbox record " + path + ": " + e.what());
  }
  return r;
}

core::Result<void> SandboxRecord::save(const std::string& path) const {
  const nlohmann::json j = {{"sandbox_id", sandbox_id}, {"pid", pid},           {"start_time", start_time},
                            {"cgroup", cgroup},         {"disk_bytes", disk_bytes}, {"memory_bytes", memory_bytes}};
  const std::string tmp = path + ".tmp";
  core::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid() || !core::write_all(fd.get(), j.dump() + "\n") || ::fsync(fd.get()) != 0 ||
      ::rename(tmp.c_str(), path.c_str()) != 0) {
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
