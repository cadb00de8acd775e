#!/usr/bin/env python3
"""The closing line of `make test-sanitize`: tests/summarize.py's count plus the sanitizers.

Usage: summarize.py TESTLOG_JSON REPORT_DIR

Sanitizer reports are written to REPORT_DIR (ASAN_OPTIONS/UBSAN_OPTIONS log_path with
log_exe_name), one file per process that found something. A report from a test
executable already failed that executable (abort_on_error), so it is only shown; a
report from an execd daemon started by a test is invisible to the test (the fixture
reads the daemon's stderr only for itself), so each counts as one more failed case.
Prints one line `N passed, M failed` last; exits 1 when anything failed.
"""
import contextlib
import io
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import summarize  # noqa: E402  tests/summarize.py

LINE = re.compile(r"^(\d+) passed, (\d+) failed$")


def main(testlog: str, report_dir: str) -> int:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summarize.main(testlog)
    lines = out.getvalue().splitlines()
    passed, failed = 0, 1
    if lines and LINE.match(lines[-1]):
        passed, failed = map(int, LINE.match(lines[-1]).groups())
        lines = lines[:-1]
    for line in lines:
        print(line)
    reports = sorted(os.listdir(report_dir)) if os.path.isdir(report_dir) else []
    for name in reports:
        path = os.path.join(report_dir, name)
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        from_daemon = ".execd." in name
        print(f"sanitizer report {name} ({'daemon: counted as a failure' if from_daemon else 'test executable'}):")
        for line in text.splitlines()[:60]:
            print(f"  | {line}")
        if from_daemon:
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
