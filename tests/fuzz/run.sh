#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD/tests/fuzz for FUZZ_SECONDS each (default 30),
# starting from the checked-in seeds in tests/fuzz/corpus/<target>/. What a run learns
# goes to BUILD/fuzz-corpus/<target>/ (the checked-in seeds are never written). A crash,
# hang, leak or sanitizer report fails the run: the reproducer is in
# BUILD/fuzz-artifacts/, and the log tail is printed. Usage: run.sh BUILD [target...]
set -uo pipefail
build=${1:?usage: run.sh BUILD [target...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
seconds=${FUZZ_SECONDS:-30}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(multipart json_request jupyter_message glob range http_request request_head websocket_frame)

# Largest input per target: a few KiB reach every state of these parsers; the glob
# target's time bound is meant for names and patterns of a few KiB.
declare -A max_len=([multipart]=16384 [json_request]=8192 [jupyter_message]=8192 [glob]=4096 [range]=256 [http_request]=16384 [request_head]=8192 [websocket_frame]=16384)

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
mkdir -p "$build/fuzz-artifacts"
failed=()
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz: $bin is missing (ninja -C $build fuzz-targets)"; failed+=("$t"); continue; }
  corpus="$build/fuzz-corpus/$t"
  mkdir -p "$corpus"
  log="$build/fuzz-artifacts/$t.log"
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="${max_len[$t]:-4096}" \
    -artifact_prefix="$build/fuzz-artifacts/$t-" -print_final_stats=1 \
    "$corpus" "$here/corpus/$t" > "$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  if [ "$rc" -eq 0 ]; then
    echo "fuzz: $t ok (${runs:-?} runs in ${seconds}s, corpus $(ls "$corpus" | wc -l))"
  else
    echo "fuzz: $t FAILED (exit $rc); log $log; reproducer:"
    ls -1 "$build/fuzz-artifacts/$t-"* 2>/dev/null | sed 's/^/  /'
    grep -v '^#' "$log" | tail -n 40 | sed 's/^/  | /'
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets clean"
