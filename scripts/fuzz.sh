#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (default 5s). CI passes a count
# (FUZZTIME=8000x): a wall-clock -fuzztime can fail with a bare "context deadline
# exceeded" and no crasher under CPU contention (go.dev/issue/75804, fixed in Go
# 1.27); a count has no deadline, so only a real finding fails the run.
# Longer runs: FUZZTIME=10m scripts/fuzz.sh, or one target:
#   go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 10m ./query
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-5s}
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
  pkg=./$(dirname "${f#./}")
  for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
    echo "fuzz $pkg $name ($t)"
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/fuzz-$$.log 2>&1 || { cat /tmp/fuzz-$$.log; exit 1; }
  done
done
rm -f /tmp/fuzz-$$.log
