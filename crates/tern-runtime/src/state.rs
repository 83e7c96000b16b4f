//! Reading an unwound instance's state into a snapshot, and writing a snapshot's state into a
//! fresh instance before it rewinds.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use tern_instrument::{
    FRAMES_EXPORT, FRAME_TRAILER, GLOBAL_EXPORT_PREFIX, MEMORY_EXPORT_PREFIX, REF_CLASSES,
    REF_SP_EXPORT_PREFIX, REF_TABLE_EXPORT_PREFIX, SP_EXPORT, STATE_EXPORT, STATE_REWINDING,
    TRANSFORM_VERSION,
};
use tern_snapshot::{
    ChunkEncoding, FdInfo, FrameInfo, GlobalValue, MemoryImage, Meta, Snapshot, StoredMemory,
    Value, PAGE,
};
use wasmtime::{Instance, Store, Val};

use crate::cache::Prepared;
use crate::host::Host;
use crate::snapfile::SnapshotFile;
use crate::sys;
use crate::{Error, Result};

pub(crate) enum CaptureError {
    /// Not capturable at this safe point; the program is intact and can be rewound.
    Retry,
    Fatal(Error),
}

impl From<Error> for CaptureError {
    fn from(e: Error) -> Self {
        CaptureError::Fatal(e)
    }
}

fn missing(what: &str) -> Error {
    Error::Mismatch(format!("instance has no export {what}"))
}

fn global(store: &mut Store<Host>, instance: &Instance, name: &str) -> Result<wasmtime::Global> {
    instance
        .get_global(&mut *store, name)
        .ok_or_else(|| missing(name))
}

fn memory(store: &mut Store<Host>, instance: &Instance, name: &str) -> Result<wasmtime::Memory> {
    instance
        .get_memory(&mut *store, name)
        .ok_or_else(|| missing(name))
}

pub(crate) fn state_of(store: &mut Store<Host>, instance: &Instance) -> Result<i32> {
    let g = global(store, instance, STATE_EXPORT)?;
    Ok(g.get(&mut *store).i32().unwrap_or(0))
}

pub(crate) fn set_state(store: &mut Store<Host>, instance: &Instance, v: i32) -> Result<()> {
    let g = global(store, instance, STATE_EXPORT)?;
    g.set(&mut *store, Val::I32(v))
        .map_err(|e| Error::Capture(format!("{e:#}")))
}

/// Capture an instance that has just finished unwinding.
pub(crate) fn capture(
    store: &mut Store<Host>,
    instance: &Instance,
    prepared: &Prepared,
    with_memories: bool,
) -> Result<Snapshot, CaptureError> {
    // Frames that hold live references (funcref, externref, exnref) cannot be written to a file.
    let mut ref_slots = [0u32; 3];
    for (k, class) in REF_CLASSES.iter().enumerate() {
        let name = format!("{REF_TABLE_EXPORT_PREFIX}{class}");
        let table = instance
            .get_table(&mut *store, &name)
            .ok_or_else(|| missing(&name))?;
        let used = global(store, instance, &format!("{REF_SP_EXPORT_PREFIX}{class}"))?
            .get(&mut *store)
            .i32()
            .unwrap_or(0) as u32;
        ref_slots[k] = used;
        for i in 0..u64::from(used).min(table.size(&*store)) {
            if let Some(r) = table.get(&mut *store, i) {
                if !r.is_null() {
                    return Err(CaptureError::Retry);
                }
            }
        }
    }
    let sp = global(store, instance, SP_EXPORT)?
        .get(&mut *store)
        .i32()
        .unwrap_or(0) as u32 as usize;
    let frames_mem = memory(store, instance, FRAMES_EXPORT)?;
    let frames = frames_mem
        .data(&*store)
        .get(..sp)
        .ok_or_else(|| Error::Capture(format!("frame stack pointer {sp} is out of bounds")))?
        .to_vec();
    let stack = describe_stack(&frames, prepared);

    let mut memories = Vec::new();
    for &index in &prepared.meta.memories {
        let mem = memory(store, instance, &format!("{MEMORY_EXPORT_PREFIX}{index}"))?;
        if with_memories {
            memories.push(MemoryImage::capture(index, mem.data(&*store)));
        } else {
            memories.push(MemoryImage {
                index,
                size: mem.data_size(&*store) as u64,
                chunks: Vec::new(),
            });
        }
    }
    let mut globals = Vec::new();
    for (index, _) in &prepared.meta.globals {
        let g = global(store, instance, &format!("{GLOBAL_EXPORT_PREFIX}{index}"))?;
        let value = match g.get(&mut *store) {
            Val::I32(v) => Value::I32(v),
            Val::I64(v) => Value::I64(v),
            Val::F32(v) => Value::F32(v),
            Val::F64(v) => Value::F64(v),
            Val::V128(v) => Value::V128(v.as_u128()),
            other => return Err(Error::Capture(format!("global {index} holds {other:?}")).into()),
        };
        globals.push(GlobalValue {
            index: *index,
            value,
        });
    }
    let wasi = store
        .data()
        .wasi
        .save()
        .map_err(|e| Error::Capture(format!("WASI state: {e}")))?;
    let fds = wasi
        .fds
        .iter()
        .map(|f| FdInfo {
            fd: f.fd,
            description: format!("{:?}", f.kind),
        })
        .collect();
    let wasi =
        serde_json::to_value(&wasi).map_err(|e| Error::Capture(format!("WASI state: {e}")))?;
    Ok(Snapshot {
        meta: Meta {
            module_digest: prepared.digest.clone(),
            transform_version: TRANSFORM_VERSION,
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            tern_version: env!("CARGO_PKG_VERSION").to_string(),
            stack,
            fds,
            ref_slots,
        },
        wasi,
        globals,
        frames,
        memories,
        module: None,
    })
}

/// Walk the saved frames from the outermost (top of the frame stack) down; innermost first in
/// the result.
fn describe_stack(frames: &[u8], prepared: &Prepared) -> Vec<FrameInfo> {
    let word = |at: usize| -> Option<u32> {
        let b = frames.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut out = Vec::new();
    let mut end = frames.len();
    while end >= FRAME_TRAILER as usize {
        let t = end - FRAME_TRAILER as usize;
        let (Some(rp), Some(func), Some(size)) = (word(t), word(t + 4), word(t + 8)) else {
            break;
        };
        out.push(FrameInfo {
            function: func,
            name: None,
            resume_point: rp,
        });
        if size < FRAME_TRAILER || size as usize > end {
            break;
        }
        end -= size as usize;
    }
    out.reverse();
    if let Some(first) = out.first_mut() {
        let names = prepared.function_names();
        first.name = names
            .iter()
            .find(|(i, _)| *i == first.function)
            .map(|(_, n)| n.clone());
    }
    out
}

/// What a resume starts from: a snapshot in memory, or a snapshot file whose pages are mapped.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    Snapshot(&'a Snapshot),
    File(&'a SnapshotFile),
    /// State received by live migration: the pages are already in the instance's memories,
    /// which the snapshot only gives the sizes of.
    Live(&'a Snapshot),
}

/// Write a snapshot's state into a freshly instantiated instance and arm the rewind.
pub(crate) fn restore(
    store: &mut Store<Host>,
    instance: &Instance,
    prepared: &Prepared,
    src: Source<'_>,
) -> Result<()> {
    let (meta, globals, frames) = match src {
        Source::Snapshot(s) | Source::Live(s) => (&s.meta, &s.globals[..], &s.frames[..]),
        Source::File(f) => {
            let o = f.opened();
            (&o.meta, &o.globals[..], &o.frames[..])
        }
    };
    if meta.transform_version != TRANSFORM_VERSION {
        return Err(Error::Mismatch(format!(
            "snapshot was written by instrumentation version {}, this Tern uses {TRANSFORM_VERSION}",
            meta.transform_version
        )));
    }
    match src {
        Source::Snapshot(snap) => {
            for image in &snap.memories {
                let (mem, initial) =
                    sized_memory(store, instance, prepared, image.index, image.size)?;
                // A fresh instance's initial pages hold its data segments; pages the snapshot
                // elided as zero must be zero again. Pages added by the grow are zero already.
                let kept: HashSet<u32> = image.chunks.iter().map(|c| c.page).collect();
                let data = mem.data_mut(&mut *store);
                for page in 0..(initial / PAGE as u64) as u32 {
                    if !kept.contains(&page) {
                        let at = page as usize * PAGE;
                        data[at..at + PAGE].fill(0);
                    }
                }
                image.write_into(data)?;
            }
        }
        Source::Live(snap) => {
            for image in &snap.memories {
                sized_memory(store, instance, prepared, image.index, image.size)?;
            }
        }
        Source::File(file) => {
            for m in &file.opened().memories {
                let (mem, initial) = sized_memory(store, instance, prepared, m.index, m.size)?;
                let data = &mut mem.data_mut(&mut *store)[..m.size as usize];
                restore_mapped(data, initial as usize, file, m)?;
            }
        }
    }
    for g in globals {
        let global = global(
            store,
            instance,
            &format!("{GLOBAL_EXPORT_PREFIX}{}", g.index),
        )?;
        let v = match g.value {
            Value::I32(v) => Val::I32(v),
            Value::I64(v) => Val::I64(v),
            Value::F32(v) => Val::F32(v),
            Value::F64(v) => Val::F64(v),
            Value::V128(v) => Val::V128(v.into()),
        };
        global
            .set(&mut *store, v)
            .map_err(|e| Error::Mismatch(format!("global {}: {e:#}", g.index)))?;
    }
    // The saved frames pop one (null) reference per reference local on the way down.
    for (k, class) in REF_CLASSES.iter().enumerate() {
        let n = meta.ref_slots[k];
        let name = format!("{REF_TABLE_EXPORT_PREFIX}{class}");
        let table = instance
            .get_table(&mut *store, &name)
            .ok_or_else(|| missing(&name))?;
        let null = match k {
            0 => wasmtime::Ref::Func(None),
            1 => wasmtime::Ref::Extern(None),
            _ => wasmtime::Ref::Exn(None),
        };
        table
            .grow(&mut *store, u64::from(n), null)
            .map_err(|e| Error::Mismatch(format!("reference table {class}: {e:#}")))?;
        let sp =
            i32::try_from(n).map_err(|_| Error::Mismatch("reference table too large".into()))?;
        global(store, instance, &format!("{REF_SP_EXPORT_PREFIX}{class}"))?
            .set(&mut *store, Val::I32(sp))
            .map_err(|e| Error::Mismatch(format!("{e:#}")))?;
    }
    let frames_mem = memory(store, instance, FRAMES_EXPORT)?;
    let need = frames.len() as u64;
    let have = frames_mem.data_size(&*store) as u64;
    if need > have {
        frames_mem
            .grow(&mut *store, (need - have).div_ceil(PAGE as u64))
            .map_err(|e| Error::Mismatch(format!("frame stack: {e:#}")))?;
    }
    frames_mem.data_mut(&mut *store)[..frames.len()].copy_from_slice(frames);
    let sp =
        i32::try_from(frames.len()).map_err(|_| Error::Mismatch("frame stack too large".into()))?;
    global(store, instance, SP_EXPORT)?
        .set(&mut *store, Val::I32(sp))
        .map_err(|e| Error::Mismatch(format!("{e:#}")))?;
    set_state(store, instance, STATE_REWINDING)
}

/// The instance's memory `index`, grown to `size`; also its size before growing.
fn sized_memory(
    store: &mut Store<Host>,
    instance: &Instance,
    prepared: &Prepared,
    index: u32,
    size: u64,
) -> Result<(wasmtime::Memory, u64)> {
    if !prepared.meta.memories.contains(&index) {
        return Err(Error::Mismatch(format!("module has no memory {index}")));
    }
    let mem = memory(store, instance, &format!("{MEMORY_EXPORT_PREFIX}{index}"))?;
    let current = mem.data_size(&*store) as u64;
    if size < current || !size.is_multiple_of(PAGE as u64) {
        return Err(Error::Mismatch(format!(
            "memory {index} was {size} bytes, the module starts with {current}"
        )));
    }
    if size > current {
        mem.grow(&mut *store, (size - current) / PAGE as u64)
            .map_err(|e| Error::Mismatch(format!("growing memory to {size} bytes: {e:#}")))?;
    }
    Ok((mem, current))
}

/// Fill `data` (a memory grown to the stored size, whose first `initial` bytes hold the data
/// segments) from a snapshot file: raw pages are mapped copy-on-write, compressed ones are
/// decompressed (and so checked) now. Where mapping is impossible the pages are copied after
/// being checked.
fn restore_mapped(
    data: &mut [u8],
    initial: usize,
    file: &SnapshotFile,
    m: &StoredMemory,
) -> Result<()> {
    let map = sys::mappable(data);
    if map {
        sys::map_zeros(&mut data[..initial])
            .map_err(|e| Error::Restore(format!("mapping zero pages: {e}")))?;
    } else {
        data[..initial].fill(0);
    }
    for c in &m.chunks {
        let start = c.first_page as usize * PAGE;
        let dest = &mut data[start..start + c.pages as usize * PAGE];
        if map
            && c.encoding == ChunkEncoding::Raw
            && sys::map_file(dest, file.file(), c.offset).is_ok()
        {
            continue;
        }
        dest.copy_from_slice(&c.decoded(file.bytes())?);
    }
    Ok(())
}
