#include "core/envs_file.hpp"

#include <fstream>

#include "core/path_expand.hpp"

namespace execd::core {

std::map<std::string, std::string> read_envs_file(const std::string& path) {
  std::map<std::string, std::string> env;
  if (path.empty()) return env;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    auto value = expand_vars(line.substr(eq + 1));
    env[line.substr(0, eq)] = value ? *value : line.substr(eq + 1);
  }
  return env;
}

}  // namespace execd::core
