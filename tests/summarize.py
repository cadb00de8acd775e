#!/usr/bin/env python3
"""Adds up doctest's per-executable summaries from meson's testlog.json.

Prints one line `N passed, M failed` (what CI reads). An executable that ended without a
doctest summary (crash, timeout, failed to start) counts as one failed case, so nothing
that did not run can pass quietly. Exits 1 when anything failed.

Before that line it shows, for each executable that failed, the doctest reports of its
failed cases (bounded), so that the tail of `make test`'s output says what failed, not
only where: CI keeps the tail of the output and nothing else.
"""
import json
import re
import sys

SEPARATOR = "=" * 79
MAX_REPORT_LINES = 60


def failure_report(out: str) -> list:
    """The doctest blocks of failed cases (and a crash's last words), at most MAX_REPORT_LINES."""
    blocks = [b.strip("\n") for b in out.split(SEPARATOR)]
    failed = [b for b in blocks if re.search(r"\b(ERROR|FATAL ERROR|CRASHED)\b|SIG[A-Z]+", b)]
    if not failed and blocks:
        failed = ["\n".join(out.strip("\n").splitlines()[-15:])]  # no doctest block: the last lines
    lines = []
    for b in failed:
        lines.extend(b.splitlines() + [""])
    if len(lines) > MAX_REPORT_LINES:
        lines = lines[:MAX_REPORT_LINES] + [f"... ({len(lines) - MAX_REPORT_LINES} more lines in testlog.txt)"]
    return lines


SUMMARY = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")


def main(path: str) -> int:
    passed = failed = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except OSError as e:
        print(f"no test log: {e}")
        lines = []
    if not lines:
        print("no tests ran")
        print("0 passed, 1 failed")
        return 1
    for test in lines:
        out = test.get("stdout", "") or ""
        if test.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP"):
            print(f"--- {test['name']}: {test.get('result')}")
            for line in failure_report(out + (test.get("stderr", "") or "")):
                print("    " + line)
        found = SUMMARY.findall(out)
        if found:
            _, p, fl = found[-1]
            passed += int(p)
            failed += int(fl)
            if int(fl) == 0 and test.get("result") not in ("OK", "EXPECTEDFAIL"):
                failed += 1  # summary said fine but the process did not exit cleanly
                print(f"{test['name']}: {test.get('result')} after all cases passed")
        else:
            failed += 1
            print(f"{test['name']}: {test.get('result')} with no doctest summary")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/meson-logs/testlog.json"))
