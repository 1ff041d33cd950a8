#!/usr/bin/env bash
# test.sh — configure, build (warnings are errors) and run the whole ctest
# suite. This is the README's test command.
#   bash scripts/test.sh                   build/ , all tests
#   BUILD_DIR=build-x bash scripts/test.sh -DKILN_SANITIZE=ON   extra cmake args pass through
#   CTEST_ARGS="-L unit" bash scripts/test.sh                  a subset (see docs/testing.md)
set -euo pipefail
cd "$(dirname "$0")/.."
# a fresh machine gets its packages first (quick no-op when they are there)
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup-debian.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DKILN_WERROR=ON "$@"
cmake --build "$build" -j2
cd "$build"
# shellcheck disable=SC2086
ctest --output-on-failure -j2 ${CTEST_ARGS:-}
