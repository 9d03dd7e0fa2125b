#!/usr/bin/env bash
# Sets up (compose/setup.sh) and runs every test: unit, component (real ZeroMQ) and system
# (real processes). Run from anywhere, as root on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash compose/setup.sh
swift build --build-tests
# If a test process ever crashes, print where.
export SWIFT_BACKTRACE=enable=yes,interactive=no,color=no
# The structure-aware fuzz: hostile messages per service and role (10,000 for a long run).
export VIOLIN_FUZZ_MESSAGES=${VIOLIN_FUZZ_MESSAGES:-2000}
swift test --skip-build --parallel 2>&1 | tee "${TMPDIR:-/tmp}/violin-test-$$.log" | grep -v '^\s*$' | tail -n 400
exit "${PIPESTATUS[0]}"
