#include "core/logging.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace execd::core {

Result<void> setup_logging(const std::string& level, const std::string& file) {
  try {
    std::shared_ptr<spdlog::logger> logger;
    if (file.empty()) {
      logger = spdlog::stderr_logger_mt("execd");
    } else {
      logger = spdlog::basic_logger_mt("execd", file);
    }
    logger->set_level(spdlog::level::from_str(level));
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
  } catch (const spdlog::spdlog_ex& e) {
    return make_error(Errc::invalid_argument, std::string("cannot set up logging: ") + e.what());
  }
  return {};
}

}  // namespace execd::core
