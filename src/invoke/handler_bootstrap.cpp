#include "invoke/handler_bootstrap.hpp"

namespace execd::invoke {

namespace {

// Python: `async def handler` is awaited with asyncio.run; a return value JSON cannot
// encode (or NaN) is an error of its own, named. SystemExit is reported as an error
// with its code rather than ending the process silently.
constexpr const char* kPython = R"PY(
import sys, os, json, traceback, inspect
def _execd_run(request, write):
    def fail(kind, message, tb=""):
        write(json.dumps({"ok": False, "error": {"type": kind, "message": message, "traceback": tb}}))
    namespace = {"__name__": "__handler__", "__builtins__": __builtins__}
    try:
        code = compile(request["code"], "<handler>", "exec")
    except SyntaxError as e:
        return fail("SyntaxError", str(e), traceback.format_exc())
    try:
        exec(code, namespace)
        handler = namespace.get("handler")
        if not callable(handler):
            return fail("HandlerNotFound", "the code defines no function named handler")
        value = handler(request["event"])
        if inspect.isawaitable(value):
            import asyncio
            async def _await(v):
                return await v
            value = asyncio.run(_await(value))
    except SystemExit as e:
        return fail("SystemExit", "the handler called sys.exit(%r)" % (e.code,), traceback.format_exc())
    except BaseException as e:
        return fail(type(e).__name__, str(e), traceback.format_exc())
    try:
        body = json.dumps({"ok": True, "value": value}, allow_nan=False)
    except (TypeError, ValueError) as e:
        return fail("NotSerializable", "the return value cannot be encoded as JSON: %s" % e)
    write(body)
def _execd_main():
    channel = os.fdopen(3, "w", encoding="utf-8")
    def write(text):
        channel.write(text)
        channel.flush()
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _execd_run(request, write)
)PY";

// JavaScript: CommonJS-style code; the handler is module.exports.handler,
// module.exports itself when a function, or a top-level `handler`. execdRun() runs one
// request; `typescript` (TypeScript only) returns the compiler module or throws why it
// cannot; `userRequire` is the `require` the code gets.
constexpr const char* kJavaScriptRun = R"JS(
const fs = require("fs");
const channel = 3;
function send(doc) { fs.writeSync(channel, JSON.stringify(doc)); }
function fail(type, message, stack) { send({ok: false, error: {type, message, traceback: stack || ""}}); }
function encode(value) {
  const seen = new Set();
  return JSON.stringify({ok: true, value: value === undefined ? null : value}, (k, v) => {
    if (typeof v === "bigint") throw new TypeError("a BigInt cannot be encoded as JSON");
    if (typeof v === "number" && !Number.isFinite(v)) throw new TypeError("a non-finite number cannot be encoded as JSON");
    if (typeof v === "function" || typeof v === "symbol") throw new TypeError("a " + typeof v + " cannot be encoded as JSON");
    if (v !== null && typeof v === "object") { if (seen.has(v)) throw new TypeError("a cyclic value cannot be encoded as JSON"); seen.add(v); }
    return v;
  });
}
function execdTranspile(ts, code) {
  return ts.transpileModule(code, {reportDiagnostics: true, compilerOptions: {module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020}});
}
async function execdRun(request, typescript, userRequire) {
  let code = request.code;
  if (typescript) {
    try {
      const ts = typescript();
      const out = execdTranspile(ts, code);
      const errors = (out.diagnostics || []).filter(d => d.category === ts.DiagnosticCategory.Error);
      if (errors.length > 0) return fail("SyntaxError", ts.flattenDiagnosticMessageText(errors[0].messageText, "\n"), "");
      code = out.outputText;
    } catch (e) { return fail("TranspileError", String(e && e.message || e), String(e && e.stack || "")); }
  }
  let handler;
  try {
    const module = {exports: {}};
    const define = new Function("module", "exports", "require", code + "\n;return typeof handler === 'function' ? handler : undefined;");
    const top = define(module, module.exports, userRequire);
    const exp = module.exports;
    handler = typeof exp === "function" ? exp : (exp && typeof exp.handler === "function" ? exp.handler : top);
  } catch (e) {
    return fail(e instanceof SyntaxError ? "SyntaxError" : (e && e.name) || "Error", String(e && e.message || e), String(e && e.stack || ""));
  }
  if (typeof handler !== "function") return fail("HandlerNotFound", "the code defines or exports no function named handler");
  let value;
  try {
    value = await handler(request.event);
  } catch (e) {
    return fail((e && e.name) || "Error", String(e && e.message || e), String(e && e.stack || ""));
  }
  let body;
  try { body = encode(value); } catch (e) { return fail("NotSerializable", "the return value cannot be encoded as JSON: " + e.message, ""); }
  fs.writeSync(channel, body);
}
function execdFailed(e) { try { fail("InternalError", String(e), ""); } catch (_) {} }
function execdTypeScript() { return require(process.env.EXECD_TYPESCRIPT_MODULE); }
)JS";

// Cold: the request is on stdin from the start.
constexpr const char* kJavaScriptCold = R"JS(
execdRun(JSON.parse(fs.readFileSync(0, "utf8")), EXECD_TS ? execdTypeScript : null, require).catch(execdFailed);
)JS";

// A spare (warm start): everything that does not depend on the request first, our own
// code only (the TypeScript compiler loaded and run once on a made-up handler, the
// bootstrap's path compiled); then it blocks on stdin, which the daemon writes only once
// the invocation's cgroup and rlimits are on this process. The request carries the
// environment and working directory a cold start would have been given at exec.
constexpr const char* kJavaScriptSpare = R"JS(
let execdTs = null, execdTsError = null;
if (EXECD_TS) {
  try {
    execdTs = execdTypeScript();
    execdTranspile(execdTs, "export async function handler(e: {n: number}): Promise<number> { return e.n; }");
  } catch (e) { execdTsError = e; }
}
new Function("module", "exports", "require", "exports.handler = (e) => e;\n;return undefined;")({exports: {}}, {}, require);
encode({s: "x", n: 1.5, l: [null, true]});
JSON.parse('{"code": "", "event": {"n": 1}, "env": ["K=v"], "cwd": "/"}');
{
  const request = JSON.parse(fs.readFileSync(0, "utf8"));
  let userRequire;
  try {
    process.argv.length = 1;  // as `node -e` has it: our tag is not the handler's
    for (const key of Object.keys(process.env)) delete process.env[key];
    for (const kv of request.env) {
      const eq = kv.indexOf("=");
      if (eq > 0) process.env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    process.chdir(request.cwd);
    // Resolving as `node -e` started in that directory would.
    userRequire = require("module").createRequire(require("path").join(process.cwd(), "[eval]"));
  } catch (e) {
    try { fs.writeSync(2, "execd: the warm start could not set up this invocation: " + String(e) + "\n"); } catch (_) {}
    process.exit(127);
  }
  execdRun(request, EXECD_TS ? () => { if (execdTsError) throw execdTsError; return execdTs; } : null, userRequire).catch(execdFailed);
}
)JS";

std::string javascript_program(Language language, const char* main) {
  std::string program = language == Language::typescript ? "const EXECD_TS = true;\n" : "const EXECD_TS = false;\n";
  program += kJavaScriptRun;
  program += main;
  return program;
}

}  // namespace

std::string_view python_bootstrap_definition() { return kPython; }

core::Result<Language> parse_language(std::string_view text) {
  if (text == "python" || text.empty()) return Language::python;
  if (text == "javascript" || text == "js") return Language::javascript;
  if (text == "typescript" || text == "ts") return Language::typescript;
  return core::make_error(core::Errc::invalid_argument,
                          "field 'language' must be python, javascript or typescript, got '" + std::string(text.substr(0, 40)) + "'");
}

std::string_view to_string(Language language) {
  switch (language) {
    case Language::python: return "python";
    case Language::javascript: return "javascript";
    case Language::typescript: return "typescript";
  }
  return "python";
}

core::Result<std::vector<std::string>> bootstrap_argv(Language language, const Runtimes& runtimes) {
  switch (language) {
    case Language::python:
      // -I: isolated mode (no user site, no PYTHON* variables, no cwd on sys.path).
      return std::vector<std::string>{runtimes.python, "-I", "-c", std::string(kPython) + "_execd_main()\n"};
    case Language::javascript:
      return std::vector<std::string>{runtimes.node, "-e", javascript_program(language, kJavaScriptCold)};
    case Language::typescript:
      if (runtimes.typescript_module_dir.empty()) {
        return core::make_error(core::Errc::not_supported, "TypeScript handlers need the typescript package (make kernels installs it)");
      }
      return std::vector<std::string>{runtimes.node, "-e", javascript_program(language, kJavaScriptCold)};
  }
  return core::make_error(core::Errc::invalid_argument, "unknown language");
}

std::vector<std::string> node_spare_argv(Language language, const std::string& node) {
  return {node, "-e", javascript_program(language, kJavaScriptSpare), std::string(kNodeSpareTag)};
}

}  // namespace execd::invoke
