//! Running an instrumented program: fresh or from a snapshot, until it exits, traps or is
//! captured.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_api::MigrationStep;
use tern_instrument::{
    FLAG_CAPTURE, FLAG_EXPORT, FLAG_REWIND, STATE_EXPORT, STATE_REWINDING, STATE_UNWINDING,
};
use tern_snapshot::{Meta, Snapshot};
use tern_wasi::{BlockingHooks, Preopen, ProcExit, WasiConfig, WasiCtx};
use wasmtime::{CallHook, Caller, Config, Engine, Linker, Store, Val};

use crate::cache::{Cache, Prepared};
use crate::control::Control;
use crate::host::Host;
use crate::snapfile::{PageCheck, SnapshotFile};
use crate::state::{self, CaptureError};
use crate::{Error, MigrationCause, Result};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// How a run begins.
pub enum Start {
    Fresh(WasiConfig),
    /// Continue a snapshot; the preopens and listeners are granted anew on this host.
    Resume {
        snapshot: Resumable,
        preopens: Vec<Preopen>,
        listeners: Vec<TcpListener>,
    },
    /// Receive a program by live migration on `conn` (see [`crate::migrate_out`]) and run it
    /// once the source says go. Should the connection end after this side is ready and before
    /// the verdict, `decide` is asked until it knows (Some(true) go, Some(false) abort): the
    /// source may have committed and then died.
    Incoming {
        conn: std::net::TcpStream,
        preopens: Vec<Preopen>,
        listeners: Vec<TcpListener>,
        decide: Box<dyn FnMut() -> Option<bool> + Send>,
    },
}

/// A snapshot to continue.
pub enum Resumable {
    /// Already in memory (just captured, or received): its pages are copied in.
    Snapshot(Box<Snapshot>),
    /// A file: its raw pages are mapped, and checked while the program runs.
    File(Arc<SnapshotFile>),
}

impl Resumable {
    pub fn meta(&self) -> &Meta {
        match self {
            Resumable::Snapshot(s) => &s.meta,
            Resumable::File(f) => &f.opened().meta,
        }
    }

    pub fn wasi(&self) -> &serde_json::Value {
        match self {
            Resumable::Snapshot(s) => &s.wasi,
            Resumable::File(f) => &f.opened().wasi,
        }
    }

    fn source(&self) -> state::Source<'_> {
        match self {
            Resumable::Snapshot(s) => state::Source::Snapshot(s),
            Resumable::File(f) => state::Source::File(f),
        }
    }
}

#[derive(Debug)]
pub enum Outcome {
    /// The program ended with this exit code.
    Exited(i32),
    /// The program was stopped at a safe point; the snapshot continues it.
    Captured(Box<Snapshot>),
    /// The program moved to another process by live migration and continues there.
    Migrated,
}

#[derive(Clone)]
pub struct RunOptions {
    /// Capture at the first safe point after this long.
    pub checkpoint_after: Option<Duration>,
    pub control: Arc<Control>,
    /// Filled in as the run goes, for benchmarks and reports.
    pub stats: Arc<Mutex<RunStats>>,
    /// Largest size of any one linear memory, in bytes: a `memory.grow` beyond it fails (the
    /// program sees an allocation failure), as under `wasmtime run -W max-memory-size`.
    pub max_memory: Option<u64>,
}

/// Timings of the state transfer, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// From the capture request to the program standing unwound at a safe point.
    pub request_to_safe_point_ms: Option<f64>,
    /// From unwound to a complete in-memory snapshot (memories, globals, frames, WASI state).
    pub capture_ms: Option<f64>,
    /// From the start of a resume to re-entering the program (rebuild the WASI state,
    /// instantiate, put memories in place, write globals and frames); the rewind that follows
    /// only reloads each frame's locals. Opening a snapshot file comes before and is not
    /// included.
    pub restore_ms: Option<f64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            checkpoint_after: None,
            control: Arc::new(Control::new()),
            stats: Arc::default(),
            max_memory: None,
        }
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<Host>,
    cache: Cache,
    locals_in_memory_above: Option<usize>,
    two_forms_up_to: Option<usize>,
}

/// Capture attempts refused for live references that are retried at the very next safe point.
const IMMEDIATE_RETRIES: u32 = 64;

/// The engine every Tern process uses: compiled code in the cache is only valid for the same
/// settings, and snapshots need the proposals that real toolchains emit.
pub fn engine_config() -> Config {
    let mut c = Config::new();
    c.wasm_exceptions(true)
        .wasm_threads(true)
        .wasm_memory64(true)
        .wasm_multi_memory(true)
        .wasm_simd(true)
        .wasm_relaxed_simd(true)
        .wasm_bulk_memory(true)
        .wasm_reference_types(true)
        .wasm_tail_call(true)
        .wasm_function_references(true)
        .wasm_gc(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Tern's instrumentation marks its capture and rewind paths unlikely (a
    // `metadata.code.branch_hint` section); the compiler then keeps them out of the hot code.
    c.wasm_branch_hinting(true);
    c
}

impl Runtime {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Result<Runtime> {
        let engine = Engine::new(&engine_config()).map_err(|e| Error::Compile(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        tern_wasi::add_to_linker(
            &mut linker,
            BlockingHooks {
                on_enter: finish_rewind,
                on_interrupt: begin_unwind,
            },
        )
        .map_err(|e| Error::Compile(format!("{e:#}")))?;
        Ok(Runtime {
            engine,
            linker,
            cache: Cache::new(cache_dir)?,
            locals_in_memory_above: None,
            two_forms_up_to: None,
        })
    }

    /// Instrument with another bound for keeping a function's locals in memory (see
    /// `tern_instrument::Options::locals_in_memory_above`); `Some(0)` moves every rewritten
    /// function's locals, which tests use to run that code path on small programs. Snapshots
    /// are the same either way, so one taken under one bound resumes under another.
    pub fn set_locals_in_memory_above(&mut self, bound: Option<usize>) {
        self.locals_in_memory_above = bound;
    }

    /// Instrument with another bound for giving a function a separate running form (see
    /// `tern_instrument::Options::two_forms_up_to`); `Some(0)` gives none, which tests use.
    pub fn set_two_forms_up_to(&mut self, bound: Option<usize>) {
        self.two_forms_up_to = bound;
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Check the module's imports, then instrument and compile it (or take both from the cache).
    pub fn prepare(&self, wasm: &[u8]) -> Result<Prepared> {
        check_imports(wasm)?;
        self.cache.prepare(
            &self.engine,
            wasm,
            self.locals_in_memory_above,
            self.two_forms_up_to,
        )
    }

    pub fn run(&self, prepared: &Prepared, start: Start, options: &RunOptions) -> Result<Outcome> {
        let control = options.control.clone();
        let restore_started = Instant::now();
        let mut incoming = None;
        let mut migrated_in = false;
        let dirs: Vec<(String, PathBuf)> = match &start {
            Start::Fresh(c) => &c.preopens,
            Start::Resume { preopens, .. } | Start::Incoming { preopens, .. } => preopens,
        }
        .iter()
        .map(|p| (p.guest.clone(), p.host.clone()))
        .collect();
        let (wasi, snapshot) = match start {
            Start::Fresh(config) => (WasiCtx::new(config)?, None),
            Start::Incoming {
                conn,
                preopens,
                listeners,
                decide,
            } => {
                // The WASI state arrives last; until then the instance has an empty one.
                let empty = WasiConfig {
                    args: Vec::new(),
                    env: Vec::new(),
                    preopens: Vec::new(),
                    listeners: Vec::new(),
                };
                incoming = Some((conn, preopens, listeners, decide));
                migrated_in = true;
                (WasiCtx::new(empty)?, None)
            }
            Start::Resume {
                snapshot,
                preopens,
                listeners,
            } => {
                if snapshot.meta().module_digest != prepared.digest {
                    return Err(Error::Mismatch(format!(
                        "the snapshot was taken from module {}, not {}",
                        snapshot.meta().module_digest,
                        prepared.digest
                    )));
                }
                let wasi_state = serde_json::from_value(snapshot.wasi().clone())
                    .map_err(|e| Error::Mismatch(format!("WASI state: {e}")))?;
                (
                    WasiCtx::restore(&wasi_state, &preopens, listeners)?,
                    Some(snapshot),
                )
            }
        };
        let mut store = Store::new(
            &self.engine,
            Host::new(wasi, control.clone(), options.max_memory),
        );
        store.limiter(|h| &mut h.limits);
        let instance = self
            .linker
            .instantiate(&mut store, &prepared.module)
            .map_err(|e| Error::Trap(format!("instantiating: {e:#}")))?;
        let flag = instance
            .get_memory(&mut store, FLAG_EXPORT)
            .ok_or_else(|| Error::Mismatch("module is not instrumented".into()))?;
        let flag_addr = flag.data_ptr(&store) as usize;
        let mut live_memories = Vec::new();
        for &index in &prepared.meta.memories {
            let name = format!("{}{index}", tern_instrument::MEMORY_EXPORT_PREFIX);
            if let Some(m) = instance.get_memory(&mut store, &name) {
                live_memories.push((index, m.data_ptr(&store) as usize));
            }
        }
        let _detach = Detach(&control);
        let main = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|_| Error::NoStart)?;
        // Pages mapped from a file are checked while the program runs; until the check has
        // passed, no host call proceeds and no outcome is reported.
        let mut page_check: Option<Arc<PageCheck>> = None;
        let checked = |page_check: &Option<Arc<PageCheck>>, r: Result<Outcome>| match page_check {
            Some(c) => c.wait().and(r),
            None => r,
        };
        if let Some((conn, preopens, listeners, mut decide)) = incoming {
            let _ = conn.set_nodelay(true);
            let mut conn = crate::fault::Cuttable::new(conn);
            let mut rx = crate::live::Receiver::new(&mut conn, dirs.clone());
            let received = rx
                .handshake(&prepared.digest, &prepared.meta.memories)
                .and_then(|sizes| {
                    let mut sink = StoreSink {
                        store: &mut store,
                        instance: &instance,
                    };
                    // Grow to the source's sizes at once (faulting the pages in ahead, in a
                    // thread beside the transfer, was measured slower on two cores: it
                    // competes with both ends for the CPUs and the address-space lock).
                    // Transparent huge pages (one fault and clear per 2 MiB) were measured
                    // bimodal on the VM here: 4x faster or 3x slower than small pages, as the
                    // hypervisor had or had not backed the 2 MiB blocks yet. Small pages, each
                    // range populated in one call before it is received, are steady.
                    for (&index, &size) in prepared.meta.memories.iter().zip(&sizes) {
                        crate::live::PageSink::memory(&mut sink, index, size).map_err(|cause| {
                            Error::Migration {
                                step: MigrationStep::Prepare,
                                cause,
                            }
                        })?;
                    }
                    rx.receive(&mut sink)
                })
                .and_then(|state| {
                    let wasi_state = serde_json::from_value(state.wasi.clone())
                        .map_err(|e| Error::Mismatch(format!("WASI state: {e}")))?;
                    store.data_mut().wasi = WasiCtx::restore(&wasi_state, &preopens, listeners)?;
                    state::restore(&mut store, &instance, prepared, state::Source::Live(&state))
                });
            if let Err(e) = received {
                rx.fail(&e.to_string());
                return Err(e);
            }
            let go = match rx.ready_then_verdict() {
                Ok(go) => go,
                Err(_) => loop {
                    if let Some(go) = decide() {
                        break go;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                },
            };
            if !go {
                return Err(Error::Migration {
                    step: MigrationStep::Commit,
                    cause: MigrationCause::Aborted,
                });
            }
            crate::sys::fetch_or_word(flag_addr, FLAG_REWIND);
        }
        control.set_live_info(crate::control::LiveInfo {
            module_digest: prepared.digest.clone(),
            memories: live_memories,
            dirs,
        });
        match &snapshot {
            None if migrated_in => {
                control.attach(flag_addr);
                options
                    .stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .restore_ms = Some(ms(restore_started.elapsed()));
            }
            None => {
                control.attach(flag_addr);
                request_after(&control, options.checkpoint_after);
                if prepared.meta.has_start {
                    let start = instance
                        .get_typed_func::<(), ()>(&mut store, tern_instrument::START_EXPORT)
                        .map_err(|e| Error::Trap(format!("{e:#}")))?;
                    if let Err(e) = start.call(&mut store, ()) {
                        return finish(e);
                    }
                }
            }
            Some(snap) => {
                state::restore(&mut store, &instance, prepared, snap.source())?;
                if let Resumable::File(file) = snap {
                    let check = file.check_pages_in_background(control.clone());
                    let gate = check.clone();
                    store.call_hook(move |_, hook| {
                        if matches!(hook, CallHook::CallingHost) {
                            gate.wait().map_err(wasmtime::Error::new)?;
                        }
                        Ok(())
                    });
                    page_check = Some(check);
                }
                crate::sys::fetch_or_word(flag_addr, FLAG_REWIND);
                control.attach(flag_addr);
                // Restore-to-running: the state is written; the rewind itself only reloads the
                // frames' locals on the way down.
                options
                    .stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .restore_ms = Some(ms(restore_started.elapsed()));
                request_after(&control, options.checkpoint_after);
            }
        }
        let mut retries = 0u32;
        loop {
            if let Err(e) = main.call(&mut store, ()) {
                return checked(&page_check, finish(e));
            }
            if state::state_of(&mut store, &instance)? != STATE_UNWINDING {
                return checked(&page_check, Ok(Outcome::Exited(0)));
            }
            let unwound = Instant::now();
            if let Some(c) = &page_check {
                c.wait()?;
            }
            // A live migration takes the state without the memories, which it reads in place.
            let live = control.take_live();
            match state::capture(&mut store, &instance, prepared, live.is_none()) {
                Ok(snapshot) => {
                    {
                        let mut stats = options.stats.lock().unwrap_or_else(|p| p.into_inner());
                        stats.capture_ms = Some(ms(unwound.elapsed()));
                        stats.request_to_safe_point_ms = control
                            .requested_at()
                            .map(|t| ms(unwound.saturating_duration_since(t)));
                    }
                    let Some(live) = live else {
                        return Ok(Outcome::Captured(Box::new(snapshot)));
                    };
                    if live.paused.send(snapshot).is_ok() && live.verdict.recv().unwrap_or(false) {
                        return Ok(Outcome::Migrated);
                    }
                    // Rolled back: the program continues here, from where it stopped.
                    state::set_state(&mut store, &instance, STATE_REWINDING)?;
                    control.clear();
                    crate::sys::fetch_and_word(flag_addr, !FLAG_CAPTURE);
                    crate::sys::fetch_or_word(flag_addr, FLAG_REWIND);
                }
                Err(CaptureError::Retry) => {
                    if let Some(live) = live {
                        control.put_live(live);
                    }
                    // A frame holds a reference that cannot be written out. Rewind in place
                    // (nothing was lost) and try again at the next safe point — which the
                    // request still pending achieves — backing off when that keeps failing,
                    // since every attempt costs an unwind and a rewind.
                    retries += 1;
                    state::set_state(&mut store, &instance, STATE_REWINDING)?;
                    crate::sys::fetch_or_word(flag_addr, FLAG_REWIND);
                    if retries > IMMEDIATE_RETRIES {
                        control.clear();
                        crate::sys::fetch_and_word(flag_addr, !FLAG_CAPTURE);
                        request_after(&control, Some(Duration::from_millis(2)));
                    }
                }
                Err(CaptureError::Fatal(e)) => return Err(e),
            }
        }
    }

    /// Compile `wasm` as is, without instrumentation: the baseline benchmarks compare against.
    pub fn compile_uninstrumented(&self, wasm: &[u8]) -> Result<wasmtime::Module> {
        wasmtime::Module::new(&self.engine, wasm).map_err(|e| Error::Compile(format!("{e:#}")))
    }

    /// Run an uninstrumented module on the same engine and WASI host.
    pub fn run_uninstrumented(&self, module: &wasmtime::Module, config: WasiConfig) -> Result<i32> {
        let control = Arc::new(Control::new());
        let mut store = Store::new(
            &self.engine,
            Host::new(WasiCtx::new(config)?, control, None),
        );
        let instance = self
            .linker
            .instantiate(&mut store, module)
            .map_err(|e| Error::Trap(format!("instantiating: {e:#}")))?;
        let main = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|_| Error::NoStart)?;
        match main.call(&mut store, ()) {
            Ok(()) => Ok(0),
            Err(e) => match finish(e)? {
                Outcome::Exited(code) => Ok(code),
                Outcome::Captured(_) | Outcome::Migrated => {
                    Err(Error::Capture("unexpected capture".into()))
                }
            },
        }
    }
}

/// Pages received by live migration go straight into the instance's memories.
struct StoreSink<'a> {
    store: &'a mut Store<Host>,
    instance: &'a wasmtime::Instance,
}

impl crate::live::PageSink for StoreSink<'_> {
    fn memory(&mut self, index: u32, end: u64) -> crate::live::Caused<&mut [u8]> {
        let name = format!("{}{index}", tern_instrument::MEMORY_EXPORT_PREFIX);
        let mem = self
            .instance
            .get_memory(&mut *self.store, &name)
            .ok_or(MigrationCause::NoMemory(index))?;
        let have = mem.data_size(&*self.store) as u64;
        if end > have {
            let grow = crate::live::pages_for(end) - crate::live::pages_for(have);
            mem.grow(&mut *self.store, grow)
                .map_err(|e| MigrationCause::Grow {
                    index,
                    end,
                    reason: format!("{e:#}"),
                })?;
        }
        Ok(mem.data_mut(&mut *self.store))
    }
}

/// Ask for a capture once `delay` has passed (if given).
fn request_after(control: &Arc<Control>, delay: Option<Duration>) {
    if let Some(delay) = delay {
        let c = control.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            c.request();
        });
    }
}

/// Detaches the capture control from the flag memory before the store goes away.
struct Detach<'a>(&'a Control);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.0.detach();
    }
}

fn finish(e: wasmtime::Error) -> Result<Outcome> {
    if let Some(exit) = e.downcast_ref::<ProcExit>() {
        return Ok(Outcome::Exited(exit.0));
    }
    Err(Error::Trap(format!("{e:?}")))
}

/// A blocking import reached during a rewind is where the capture happened: the rewind ends and
/// the import now runs for real.
fn finish_rewind(caller: &mut Caller<'_, Host>) -> wasmtime::Result<()> {
    let Some(state) = caller
        .get_export(STATE_EXPORT)
        .and_then(|e| e.into_global())
    else {
        return Ok(());
    };
    if state.get(&mut *caller).i32() == Some(STATE_REWINDING) {
        state.set(&mut *caller, Val::I32(0))?;
        if let Some(flag) = caller.get_export(FLAG_EXPORT).and_then(|e| e.into_memory()) {
            crate::sys::fetch_and_word(flag.data_ptr(&*caller) as usize, !FLAG_REWIND);
        }
    }
    Ok(())
}

/// A blocking import gave up for a capture: start unwinding from its call site.
fn begin_unwind(caller: &mut Caller<'_, Host>) -> wasmtime::Result<()> {
    if let Some(state) = caller
        .get_export(STATE_EXPORT)
        .and_then(|e| e.into_global())
    {
        state.set(&mut *caller, Val::I32(STATE_UNWINDING))?;
    }
    Ok(())
}

/// Refuse, before any work, a module that needs imports Tern does not provide.
fn check_imports(wasm: &[u8]) -> Result<()> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(tern_instrument::Error::from)?;
        match payload {
            wasmparser::Payload::ImportSection(r) => {
                for imp in r.into_imports() {
                    let imp = imp.map_err(tern_instrument::Error::from)?;
                    let name = format!("{}.{}", imp.module, imp.name);
                    if imp.name.contains("thread-spawn") || imp.name.contains("thread_spawn") {
                        return Err(tern_instrument::Error::Unsupported(format!(
                            "thread spawning (import {name})"
                        ))
                        .into());
                    }
                    let is_func = matches!(imp.ty, wasmparser::TypeRef::Func(_));
                    if !is_func
                        || imp.module != tern_wasi::IMPORT_MODULE
                        || !tern_wasi::provides(imp.name)
                    {
                        return Err(Error::UnknownImport(name));
                    }
                }
            }
            wasmparser::Payload::CodeSectionStart { .. } => break,
            _ => {}
        }
    }
    Ok(())
}
