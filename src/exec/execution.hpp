#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "exec/event_log.hpp"

namespace execd::exec {

/// One run of something (a command, a code cell, a session run): its id, what kind it
/// is, and its EventLog. Domain modules keep their own state beside it (the process, the
/// kernel request); the Execution is what HTTP readers attach to.
class Execution {
 public:
  Execution(std::string id, std::string kind, EventLog::Options log_options)
      : id_(std::move(id)), kind_(std::move(kind)), log_(std::make_shared<EventLog>(std::move(log_options))),
        started_(std::chrono::system_clock::now()) {}

  [[nodiscard]] const std::string& id() const { return id_; }
  [[nodiscard]] const std::string& kind() const { return kind_; }
  [[nodiscard]] const std::shared_ptr<EventLog>& log() const { return log_; }
  [[nodiscard]] std::chrono::system_clock::time_point started_at() const { return started_; }

 private:
  std::string id_;
  std::string kind_;
  std::shared_ptr<EventLog> log_;
  std::chrono::system_clock::time_point started_;
};

}  // namespace execd::exec
