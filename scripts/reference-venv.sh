#!/usr/bin/env bash
# Make a Python venv with wasmtime-py (pinned by sha256) for scripts/reference-run.py, the
# reference the real-program tests compare Tern with: real wasmtime, its own WASI.
#
#   scripts/reference-venv.sh [VENV_DIR]     (default: target/reference-venv, relative to the
#                                             repository root)
#
# Prints the venv's python on stdout. Idempotent: a venv that already imports the pinned
# version is left alone. Uses only python3 -m venv and pip (PyPI).
set -euo pipefail

WASMTIME_PY_VERSION=51.0.0
WASMTIME_PY_WHEEL_SHA256=cb4a48bae3de3c0ca99a67e05debbe4bfe48bea7f25ac71ee42fb3fd681ef93c

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-target/reference-venv}
case $venv in
  /*) ;;
  *) venv=$repo_root/$venv ;;
esac
python=$venv/bin/python

if [ -x "$python" ] && "$python" -c "import importlib.metadata as m, sys; import wasmtime; sys.exit(m.version('wasmtime') != '$WASMTIME_PY_VERSION')" 2>/dev/null; then
  echo "$python"
  exit 0
fi

log() { printf 'reference-venv: %s\n' "$*" >&2; }
case $(uname -m) in
  x86_64) ;;
  *) log "the pinned wheel is for x86_64 Linux; this is $(uname -m)"; exit 1 ;;
esac
rm -rf "$venv"
log "creating $venv with wasmtime-py $WASMTIME_PY_VERSION"
python3 -m venv "$venv" >&2
req=$(mktemp)
trap 'rm -f "$req"' EXIT
echo "wasmtime==$WASMTIME_PY_VERSION --hash=sha256:$WASMTIME_PY_WHEEL_SHA256" > "$req"
"$python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --require-hashes -r "$req" >&2
echo "$python"
