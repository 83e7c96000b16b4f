#!/bin/bash
# Times Yosys synthesising fixtures/real-programs/top.v under `tern run` (compiled code cached in
# TERN_HOME, default: the integration tests' home) and under real wasmtime (wasmtime-py, see
# scripts/reference-venv.sh), alternately, whole process, and checks that the netlists match.
# Needs scripts/fetch-real-programs.sh, scripts/reference-venv.sh and a release build of tern;
# the first tern run compiles Yosys (minutes).
set -euo pipefail
R="$(cd "$(dirname "$0")/.." && pwd)"
P="$R/target/real-programs"
export TERN_HOME="${TERN_HOME:-$R/target/tmp/tern-home}"
S="read_verilog /work/top.v; synth -top top; tee -q -o /work/stat.txt stat; write_json /work/netlist.json"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
cd "$W"
for who in tern wasmtime tern wasmtime tern wasmtime; do
  rm -rf w t; mkdir -p w t; cp "$R/fixtures/real-programs/top.v" w/
  start=$(date +%s%N)
  if [ "$who" = tern ]; then
    "$R/target/release/tern" run --dir w::/work --dir "$P/yosys-share::/share" --dir t::/tmp \
      "$P/yosys.wasm" -- -q -p "$S" >/dev/null
  else
    "$R/target/reference-venv/bin/python" "$R/scripts/reference-run.py" \
      --cache-dir "$R/target/reference-cache" --dir w::/work --dir "$P/yosys-share::/share" \
      --dir t::/tmp "$P/yosys.wasm" -- -q -p "$S" >/dev/null
  fi
  end=$(date +%s%N)
  echo "$who $(( (end - start) / 1000000 )) ms, netlist $(md5sum < w/netlist.json | cut -c1-12)"
done
start=$(date +%s%N)
"$R/target/release/tern" run "$P/yosys.wasm" -- -V >/dev/null
end=$(date +%s%N)
echo "tern run yosys -V: $(( (end - start) / 1000000 )) ms"
