#include "jupyter/kernelspec.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace execd::jupyter {

std::vector<std::string> jupyter_data_dirs() {
  std::vector<std::string> dirs;
  if (const char* jp = std::getenv("JUPYTER_PATH"); jp != nullptr) {
    std::string s = jp;
    size_t start = 0;
    while (start <= s.size()) {
      size_t colon = s.find(':', start);
      if (colon == std::string::npos) colon = s.size();
      if (colon > start) dirs.push_back(s.substr(start, colon - start));
      start = colon + 1;
    }
  }
  if (const char* dd = std::getenv("JUPYTER_DATA_DIR"); dd != nullptr && *dd != '\0') {
    dirs.emplace_back(dd);
  } else if (const char* home = std::getenv("HOME"); home != nullptr) {
    dirs.push_back(std::string(home) + "/.local/share/jupyter");
  }
  dirs.emplace_back("/usr/local/share/jupyter");
  dirs.emplace_back("/usr/share/jupyter");
  return dirs;
}

std::vector<KernelSpec> discover_kernelspecs(const std::vector<std::string>& dirs) {
  namespace fs = std::filesystem;
  std::vector<KernelSpec> out;
  std::set<std::string> seen;
  for (const auto& d : dirs) {
    std::error_code ec;
    const fs::path kernels = fs::path(d) / "kernels";
    if (!fs::is_directory(kernels, ec)) continue;
    std::vector<fs::path> entries;
    for (const auto& e : fs::directory_iterator(kernels, ec)) entries.push_back(e.path());
    std::sort(entries.begin(), entries.end());
    for (const auto& dir : entries) {
      const std::string name = dir.filename().string();
      if (seen.count(name) != 0) continue;
      std::ifstream in(dir / "kernel.json");
      if (!in) continue;
      nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("argv") || !j["argv"].is_array() || j["argv"].empty()) {
        spdlog::warn("kernelspec {}: kernel.json is not valid; skipped", (dir / "kernel.json").string());
        continue;
      }
      KernelSpec s;
      s.name = name;
      s.display_name = j.value("display_name", name);
      s.language = j.value("language", "");
      std::transform(s.language.begin(), s.language.end(), s.language.begin(), [](unsigned char c) { return std::tolower(c); });
      for (const auto& a : j["argv"]) {
        if (a.is_string()) s.argv.push_back(a.get<std::string>());
      }
      if (j.contains("env") && j["env"].is_object()) {
        for (const auto& [k, v] : j["env"].items()) {
          if (v.is_string()) s.env[k] = v.get<std::string>();
        }
      }
      s.interrupt_mode = j.value("interrupt_mode", "signal");
      s.resource_dir = dir.string();
      seen.insert(name);
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::map<std::string, KernelSpec> specs_by_language(const std::vector<KernelSpec>& specs,
                                                    const std::map<std::string, std::string>& preferred) {
  std::map<std::string, KernelSpec> out;
  for (const auto& s : specs) {
    if (s.language.empty()) continue;
    if (out.count(s.language) == 0) out[s.language] = s;
  }
  for (const auto& [language, name] : preferred) {
    for (const auto& s : specs) {
      if (s.name == name) out[language] = s;
    }
  }
  return out;
}

}  // namespace execd::jupyter
