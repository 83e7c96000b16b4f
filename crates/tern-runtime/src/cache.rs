//! The local module cache: original modules by digest (so `tern resume` finds the module a
//! snapshot names) and their instrumented, compiled form (so a second start costs a file map).
//!
//! Layout under the cache directory:
//! `modules/<hex>.wasm`, and `compiled/<hex>-t<transform>.{cwasm,json,names.json}`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tern_instrument::{GlobalKind, Options, TRANSFORM_VERSION};

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// What the runtime needs to know about an instrumented module, kept beside its compiled code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleMeta {
    pub globals: Vec<(u32, String)>,
    pub memories: Vec<u32>,
    pub has_start: bool,
    pub functions: u32,
    pub instrumented: u32,
    pub resume_points: u32,
    pub polls: u32,
    pub instrumented_bytes: u64,
}

/// A module ready to instantiate.
pub struct Prepared {
    pub digest: String,
    pub module: wasmtime::Module,
    pub meta: ModuleMeta,
    /// Whether instrumentation and compilation were skipped thanks to the cache.
    pub cached: bool,
    pub instrument_ms: f64,
    pub compile_ms: f64,
    names: PathBuf,
}

impl Prepared {
    /// Function names by index, read from the cache only when a capture needs them.
    pub fn function_names(&self) -> Vec<(u32, String)> {
        std::fs::read(&self.names)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Cache {
        path: path.to_path_buf(),
        source,
    }
}

/// Write a file so that readers never see it half-written.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Cache> {
        let dir = dir.into();
        for sub in ["modules", "compiled"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        Ok(Cache { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn module_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("modules")
            .join(format!("{}.wasm", hex_of(digest)))
    }

    /// Keep the original module so that snapshots naming it can be resumed later.
    pub fn store_module(&self, digest: &str, wasm: &[u8]) -> Result<()> {
        let path = self.module_path(digest);
        if !path.exists() {
            write_atomic(&path, wasm)?;
        }
        Ok(())
    }

    /// The module with this digest, if cached (and intact: the bytes are re-hashed).
    pub fn load_module(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let path = self.module_path(digest);
        match std::fs::read(&path) {
            Ok(bytes) if tern_snapshot::digest(&bytes) == digest => Ok(Some(bytes)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Instrument and compile `wasm`, or load both from the cache.
    pub(crate) fn prepare(
        &self,
        engine: &wasmtime::Engine,
        wasm: &[u8],
        locals_in_memory_above: Option<usize>,
        two_forms_up_to: Option<usize>,
    ) -> Result<Prepared> {
        let digest = tern_snapshot::digest(wasm);
        self.store_module(&digest, wasm)?;
        // Which functions keep their locals in memory, and which have two forms, changes the
        // code, not the snapshots.
        let bound =
            locals_in_memory_above.unwrap_or(tern_instrument::DEFAULT_LOCALS_IN_MEMORY_ABOVE);
        let forms = two_forms_up_to.unwrap_or(tern_instrument::DEFAULT_TWO_FORMS_UP_TO);
        let stem = format!("{}-t{TRANSFORM_VERSION}-m{bound}-f{forms}", hex_of(&digest));
        let compiled = self.dir.join("compiled");
        let code = compiled.join(format!("{stem}.cwasm"));
        let meta_path = compiled.join(format!("{stem}.json"));
        let names = compiled.join(format!("{stem}.names.json"));
        if let (Ok(meta), true) = (std::fs::read(&meta_path), code.exists()) {
            if let (Ok(meta), Ok(module)) = (
                serde_json::from_slice::<ModuleMeta>(&meta),
                crate::sys::deserialize_module(engine, &code),
            ) {
                return Ok(Prepared {
                    digest,
                    module,
                    meta,
                    cached: true,
                    instrument_ms: 0.0,
                    compile_ms: 0.0,
                    names,
                });
            }
        }
        let t = Instant::now();
        let inst = tern_instrument::instrument(
            wasm,
            &instrument_options(locals_in_memory_above, two_forms_up_to),
        )?;
        let instrument_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let module = wasmtime::Module::new(engine, &inst.wasm)
            .map_err(|e| Error::Compile(format!("{e:#}")))?;
        let compile_ms = t.elapsed().as_secs_f64() * 1e3;
        let meta = ModuleMeta {
            globals: inst
                .globals
                .iter()
                .map(|(i, k)| (*i, kind_name(*k).to_string()))
                .collect(),
            memories: inst.memories.clone(),
            has_start: inst.has_start,
            functions: inst.stats.functions,
            instrumented: inst.stats.instrumented,
            resume_points: inst.stats.resume_points,
            polls: inst.stats.polls,
            instrumented_bytes: inst.wasm.len() as u64,
        };
        let serialized = module
            .serialize()
            .map_err(|e| Error::Compile(format!("{e:#}")))?;
        write_atomic(&code, &serialized)?;
        write_atomic(
            &names,
            &serde_json::to_vec(&inst.function_names).unwrap_or_default(),
        )?;
        write_atomic(
            &meta_path,
            &serde_json::to_vec_pretty(&meta).unwrap_or_default(),
        )?;
        remove_other_versions(&compiled, hex_of(&digest));
        Ok(Prepared {
            digest,
            module,
            meta,
            cached: false,
            instrument_ms,
            compile_ms,
            names,
        })
    }
}

/// Remove what earlier (or later) transform versions compiled for the module `hex`: this Tern
/// can use none of it, and for a large program it is most of a Tern home (Yosys's code is
/// 0.75 GiB). Best effort: a file another process still maps stays readable to it.
fn remove_other_versions(compiled: &Path, hex: &str) {
    let Ok(entries) = std::fs::read_dir(compiled) else {
        return;
    };
    let ours = format!("{hex}-t{TRANSFORM_VERSION}-");
    let prefix = format!("{hex}-t");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with(&prefix) && !name.starts_with(&ours) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// How Tern instruments a module: the WASI imports that block can be interrupted for a capture.
fn instrument_options(
    locals_in_memory_above: Option<usize>,
    two_forms_up_to: Option<usize>,
) -> Options {
    Options {
        capturing_imports: tern_wasi::BLOCKING_FUNCTIONS
            .iter()
            .map(|n| (tern_wasi::IMPORT_MODULE.to_string(), n.to_string()))
            .collect(),
        locals_in_memory_above,
        two_forms_up_to,
    }
}

fn kind_name(k: GlobalKind) -> &'static str {
    match k {
        GlobalKind::I32 => "i32",
        GlobalKind::I64 => "i64",
        GlobalKind::F32 => "f32",
        GlobalKind::F64 => "f64",
        GlobalKind::V128 => "v128",
    }
}
