#!/bin/bash
# Counts the instructions a guest program executes plain and instrumented, under valgrind
# (callgrind), and prints the ratio: the overhead figure without a shared VM's timing noise.
#
#   scripts/icount.sh [--functions N] [--dir HOST] MODULE.wasm [ARGS...]
#
# Runs the overhead example (crates/tern-runtime/examples/overhead.rs) three times, once each
# with --only plain, --only tern and --only none, and subtracts the last (engine setup,
# instrumentation, compilation) from the others. Only the main thread is counted: the guest
# runs there, Cranelift's worker threads do not. Counts repeat to within a few hundred
# instructions from run to run. --functions N also prints the N functions with the most plain
# instructions, each with its instrumented count (scripts/icount-functions.py).
#
# Needs valgrind (apt-get install valgrind). Builds the example with the `valgrind` feature
# (system calls through libc: valgrind does not model the vDSO rustix uses) in its own target
# directory, target/valgrind, so that the normal build is not rebuilt each time.
set -euo pipefail
R="$(cd "$(dirname "$0")/.." && pwd)"
functions=0
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --functions) functions="$2"; shift 2 ;;
    --dir) pass+=(--dir "$2"); shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--functions N] [--dir HOST] MODULE.wasm [ARGS...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "$0: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
CARGO_TARGET_DIR="$R/target/valgrind" cargo build -q --release -p tern-runtime \
  --features valgrind --example overhead
bin="$R/target/valgrind/release/examples/overhead"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
for side in plain tern none; do
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$W/cg.$side" -q \
    "$bin" --runs 1 --only "$side" "${pass[@]}" "$@" >/dev/null 2>"$W/log.$side" \
    || { cat "$W/log.$side" >&2; exit 1; }
done
total() { awk '/^(summary|totals):/ { print $2; exit }' "$W/cg.$1-01"; }
plain=$(( $(total plain) - $(total none) ))
tern=$(( $(total tern) - $(total none) ))
echo "$(basename "$1") ${*:2}: plain $plain, tern $tern instructions, ratio $(awk "BEGIN { printf \"%.4f\", $tern / $plain }")"
if [ "$functions" -gt 0 ]; then
  # Both sides in one process, so that the map's addresses (which differ from run to run) are
  # the ones the counts are for.
  valgrind --tool=callgrind --separate-threads=yes --dump-instr=yes --dump-line=no \
    --compress-pos=no --callgrind-out-file="$W/cg.both" -q \
    "$bin" --runs 1 --function-map "$W/map" "${pass[@]}" "$@" >/dev/null 2>"$W/log.both" \
    || { cat "$W/log.both" >&2; exit 1; }
  python3 "$R/scripts/icount-functions.py" "$W/map" "$W/cg.both-01" "$functions"
fi
