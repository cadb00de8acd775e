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

/// The last argument of a spare's command line (node_spare_argv): how the daemon's tests
/// and benches tell spares from other node processes. The spare takes it out of
/// process.argv before the handler runs.
inline constexpr std::string_view kNodeSpareTag = "execd-node-spare";

/// The argv of a spare for a JavaScript or TypeScript handler (a warm start: NodeSpares):
/// `node -e` with the same bootstrap as the cold argv's, which first loads what does not
/// depend on the request (TypeScript: the compiler from $EXECD_TYPESCRIPT_MODULE, run
/// once on a made-up handler) and then blocks reading stdin. Its stdin is one JSON
/// document `{"code", "event", "env": ["K=V", ...], "cwd"}`: it replaces its whole
/// environment with `env`, changes to `cwd`, takes the tag out of process.argv and runs
/// the request as the cold bootstrap does (same result channel, same `require` as a
/// `node -e` started in `cwd`). A setup step that fails is a line on stderr and exit
/// status 127, with the channel empty.
std::vector<std::string> node_spare_argv(Language language, const std::string& node);

/// The Python bootstrap above as the definition of a function `_execd_main()` (stdin and
/// descriptor 3 around `_execd_run(request, write)`, which runs one request and hands the
/// encoded result to `write`), without the call: the cold argv calls it at once; the
/// zygote (zygote_program.hpp) defines it once and calls it in each child it forks, so
/// both paths run the same code.
std::string_view python_bootstrap_definition();

}  // namespace execd::invoke
