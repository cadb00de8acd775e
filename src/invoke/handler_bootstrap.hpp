#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace execd::invoke {

/// The languages a handler may be written in.
enum class Language { python, javascript, typescript };

/// "python" | "javascript" | "typescript" (also "js", "ts"); invalid_argument naming the
/// field otherwise.
core::Result<Language> parse_language(std::string_view text);
std::string_view to_string(Language language);

/// Where the interpreters are.
struct Runtimes {
  std::string python = "python3";
  std::string node = "node";
  /// A directory holding the `typescript` package (tslab brings one); empty: TypeScript
  /// handlers are not_supported.
  std::string typescript_module_dir;
};

/// The argv that runs a handler cold: the interpreter with the bootstrap program given
/// inline (-c / -e), so neither the bootstrap nor the user's code is ever written to
/// disk. The bootstrap reads one JSON document `{"code", "event"}` from stdin, points
/// stdin at /dev/null, defines the code, calls `handler(event)` (awaiting a coroutine or
/// Promise), and writes exactly one JSON document to descriptor 3, the result channel:
///   {"ok": true, "value": <return value>}
///   {"ok": false, "error": {"type", "message", "traceback"}}
/// It never writes the result to stdout or stderr, so nothing a handler prints can forge
/// or break it. A handler that exits the process itself leaves the channel empty.
core::Result<std::vector<std::string>> bootstrap_argv(Language language, const Runtimes& runtimes);

/// The Python bootstrap above as the definition of a function `_execd_main()` (stdin and
/// descriptor 3 around `_execd_run(request, write)`, which runs one request and hands the
/// encoded result to `write`), without the call: the cold argv calls it at once; the
/// zygote (zygote_program.hpp) defines it once and calls it in each child it forks, so
/// both paths run the same code.
std::string_view python_bootstrap_definition();

}  // namespace execd::invoke
