// One main for every test executable: doctest's runner, whose closing
// "[doctest] test cases: N | P passed | F failed" line tests/summarize.py reads.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
