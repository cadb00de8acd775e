#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace execd::jupyter {

/// A kernel.json found on the machine.
struct KernelSpec {
  std::string name;          ///< directory name, e.g. python3
  std::string display_name;
  std::string language;      ///< lower-case, e.g. python
  std::vector<std::string> argv;  ///< with "{connection_file}" to substitute
  std::map<std::string, std::string> env;
  std::string interrupt_mode = "signal";  ///< or "message"
  std::string resource_dir;
};

/// The standard Jupyter data directories, in priority order: every entry of
/// $JUPYTER_PATH, then $JUPYTER_DATA_DIR or ~/.local/share/jupyter, then
/// /usr/local/share/jupyter and /usr/share/jupyter.
std::vector<std::string> jupyter_data_dirs();

/// Every kernelspec under <dir>/kernels/*/kernel.json of `dirs`; the first of a name
/// wins. Broken kernel.json files are skipped (and logged).
std::vector<KernelSpec> discover_kernelspecs(const std::vector<std::string>& dirs);

/// Which spec serves each language: `preferred` (language -> spec name, from --kernel)
/// first, else the first spec of that language by name.
std::map<std::string, KernelSpec> specs_by_language(const std::vector<KernelSpec>& specs,
                                                    const std::map<std::string, std::string>& preferred);

}  // namespace execd::jupyter
