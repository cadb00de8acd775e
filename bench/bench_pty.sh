#!/usr/bin/env bash
# PTY sessions (issue 14): keystroke echo round trip through the /pty WebSocket beside a
# bare openpty + bash loop, in one Python process (bench/pty_echo.py), same run.
set -euo pipefail
BUILD=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

start_execd "$BUILD"
trap stop_execd EXIT
/usr/bin/python3 "$here/pty_echo.py" "$EXECD_PORT" "${KEYS:-2000}"
