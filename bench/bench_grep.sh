#!/usr/bin/env bash
# Content search (issue 16): GET /files/grep beside ripgrep and grep -r, same searches, same
# trees, in one run, page cache warm (a warm-up round, then three rounds of each tool once;
# the figure is the median of the three). Trees: /usr/share (large, mixed text and binary) and a
# source tree made here (a copy of /usr/include with a .gitignore). execd answers
# format=json over HTTP, so its time includes rendering and sending every match; ripgrep
# and grep write to /dev/null. Target: execd within 1.5x of ripgrep, far below grep -r.
# Usage: bench_grep.sh [BUILD] [BASE_BUILD]: with BASE_BUILD, an execd from that build (an
# older commit) is timed in the same rounds too (column base_s).
set -euo pipefail
BUILD=${1:-build}
BASE=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
command -v rg >/dev/null || { echo "bench_grep: ripgrep missing (apt-get install ripgrep)"; exit 1; }

work=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
BASE_PID=
trap 'stop_execd; [ -n "$BASE_PID" ] && kill "$BASE_PID" 2>/dev/null; rm -rf "$work"' EXIT
cp -r /usr/include "$work/src"
printf '*.gch\nbuild/\n' > "$work/src/.gitignore"
if [ -n "$BASE" ]; then
  start_execd "$BASE" --search-timeout 600s
  BASE_PID=$EXECD_PID; EB="http://127.0.0.1:$EXECD_PORT"; rm -f "$EXECD_LOG"
fi
start_execd "$BUILD" --search-timeout 600s
E="http://127.0.0.1:$EXECD_PORT"

urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
# Wall seconds of one run of "$@".
once() {
  local t0 t1
  t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
# The URL is built before timing: python3 (a pyenv shim here) can take longer to start than a search.
grep_url() { echo "$E/files/grep?format=json&max_results=100000&path=$(urlenc "$1")&pattern=$(urlenc "$2")${3:-}"; }
execd_grep() { curl -sf -o /dev/null "$1"; }
count_execd() { curl -sf "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print(s["matches"], s["truncated"])'; }

printf '%-44s %9s %9s %9s %9s %9s %9s %7s %7s\n' search "execd_s" "base_s" "rg_s" "rg-j1_s" "grep_s" matches "x_rg" "verdict"
run() {
  local name=$1 dir=$2 pat=$3 eflags=$4; shift 4
  local rgflags=("$@")
  local url m gflags=-rnE
  url=$(grep_url "$dir" "$pat" "$eflags")
  case " ${rgflags[*]} " in
    *" -F "*) gflags=-rnF ;;
    *" -i "*) gflags=-rniE ;;
  esac
  # Each tool once per round, three rounds after a warm-up round: a burst of load from
  # elsewhere hits all four alike, not one tool's three runs.
  local -a te=() tb=() tr=() tr1=() tg=()
  for round in 0 1 2 3; do
    local a b c d x=-
    a=$(once execd_grep "$url")
    [ -n "$BASE" ] && x=$(once execd_grep "${url/#$E/$EB}")
    b=$(once rg "${rgflags[@]}" -n --column -- "$pat" "$dir")
    c=$(once rg -j1 "${rgflags[@]}" -n --column -- "$pat" "$dir")
    d=$(once grep "$gflags" -- "$pat" "$dir")
    [ "$round" = 0 ] && continue
    te+=("$a"); tb+=("$x"); tr+=("$b"); tr1+=("$c"); tg+=("$d")
  done
  local e eb r r1 g
  e=$(median3 "${te[@]}"); eb=$(median3 "${tb[@]}"); r=$(median3 "${tr[@]}"); r1=$(median3 "${tr1[@]}"); g=$(median3 "${tg[@]}")
  m=$(count_execd "$url")
  printf '%-44s %9s %9s %9s %9s %9s %9s %7s %7s\n' "$name" "$e" "$eb" "$r" "$r1" "$g" "${m% *}" "$(ratio "$e" "$r")" \
    "$(verdict "$e <= 1.5 * $r")"
}
# -uu: no ignore files, hidden files searched (what execd does without gitignore=true).
run "usr/share literal 'Copyright (C) 2019'" /usr/share 'Copyright (C) 2019' "&fixed=true" -uu -F
run "usr/share regex '[A-Z][a-z]+ing the'" /usr/share '[A-Z][a-z]+ing the' "" -uu
run "usr/share ignore_case 'gnu general'" /usr/share 'gnu general' "&ignore_case=true" -uu -i
run "src literal 'EXIT_SUCCESS'" "$work/src" 'EXIT_SUCCESS' "" -uu -F
run "src regex '\\w+_MAX\\b'" "$work/src" '\w+_MAX\b' "" -uu
run "src gitignore regex 'struct \\w+ \\{'" "$work/src" 'struct \w+ \{' "&gitignore=true" --hidden
run "src no match 'zzqqxxyy'" "$work/src" 'zzqqxxyy' "" -uu
