#!/usr/bin/env bash
# Benchmark check for CI (a few minutes): asv must discover and import every
# benchmark, and a one-sample run of the quick suites must succeed, so that a
# broken benchmark fails CI. Runs against the fastzero installed in the current
# Python (asv's --python=same), saves no results. Needs: pip install ".[bench]".
#
#   bash benchmarks/ci_check.sh            # the default subset below
#   bash benchmarks/ci_check.sh 'bench_conv' # or any asv --bench regex
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH="${1:-^bench_(activation|augment|dense|dropout|loss|norm|optim|peers|pool|train)\.}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

export FASTZERO_BENCH_FAST=1                 # no DeepConvNet step
export NUMBA_CACHE_DIR="$WORK/numba-cache"   # compile into a private cache
# asv keeps its machine description in ~/.asv-machine.json: use a throw-away home.
asv_() { HOME="$WORK" python -m asv "$@"; }

asv_ machine --yes --machine ci-check >/dev/null
asv_ check --python=same
asv_ run --python=same --quick --dry-run --show-stderr --machine ci-check --bench "$BENCH"
