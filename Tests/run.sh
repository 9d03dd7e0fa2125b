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
tests=${PIPESTATUS[0]}
# The chaos soak, 3 minutes on a fixed seed: it passes or fails on its invariants (Tests/Chaos).
chaos=0
python3 Tests/Chaos/chaos.py --minutes 3 --seed 1 || chaos=$?
[ "$tests" = 0 ] || exit "$tests"
exit "$chaos"
