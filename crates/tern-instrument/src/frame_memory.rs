//! Locals in memory: the second stage for functions too large for the compiler once rewritten.
//!
//! A rewritten function joins its running path and its rewind path after every segment and item.
//! A local that lives across a resume point reaches its uses through all of those joins, and
//! Cranelift's SSA construction pays for each local at each join it crosses: for the largest
//! functions of real programs (Yosys: thousands of locals, tens of thousands of resume points)
//! that product took more than 15 GiB and did not finish. Here every numeric local of such a
//! function moves into a frame in a memory of Tern's own (`local.get` becomes a load,
//! `local.set` a store), so the compiler sees no variables to join; the function runs slower,
//! which is why only functions past [`LOCALS_TIMES_POINTS`] get this.
//!
//! The frame is scratch: captures still save live locals through the rewrite's own frame code
//! (now reading them from memory) and rewinds write them back, so the locals memory never needs
//! to be captured and a resumed instance starts it empty. A frame is taken on entry and given
//! back on every way out (the end, `return`, a branch to the function's label, a tail call); an
//! exception that leaves the function skips that, and the space is given back when a caller
//! with a frame in this memory returns.

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType, Instruction, MemArg, ValType as EncType};
use wasmparser::ValType;

use crate::{Error, Result};

/// Above how many numeric locals times resume points a rewritten function keeps its locals in
/// memory, unless [`crate::Options::locals_in_memory_above`] says otherwise. The compiler's cost
/// grows with the locals that cross the rewind joins times the joins (about one per resume
/// point). On Yosys the largest product is 12 million (2,394 locals, 5,117 resume points): that
/// function alone did not compile in 24 GiB, and compiles in about 100 s with its locals in
/// memory. The whole module, on two cores: bound 2,000,000 (4 functions moved) ran out of
/// memory; 100,000 (138 of 43,197) 451 s; 30,000 (420) 240 s; 10,000 (938) 215 s. Below this
/// bound the gain flattens while more functions pay for loads and stores (at 10,000, five of
/// Flite's functions would; at 30,000 none). See docs/benchmarks.md.
pub const LOCALS_TIMES_POINTS: usize = 30_000;

/// Where the locals memory is: its index and the global holding the next free byte; and for
/// reference locals (which memory cannot hold), one table per class (funcref, externref,
/// exnref) with the global holding its next free entry.
#[derive(Clone, Copy)]
pub struct LocalsMemory {
    pub memory: u32,
    pub sp_global: u32,
    pub ref_tables: [(u32, u32); 3],
}

/// The reference types a locals table holds, in the order of [`LocalsMemory::ref_tables`].
pub const REF_TABLE_TYPES: [wasmparser::RefType; 3] = [
    wasmparser::RefType::FUNCREF,
    wasmparser::RefType::EXTERNREF,
    wasmparser::RefType::EXNREF,
];

/// Rewrites `code` (a whole body's instructions, ending with the function's `end`) so that
/// every numeric local lives in a frame of `m`'s memory. `locals` are the function's locals,
/// parameters first; returns the locals to append to its declarations.
pub fn move_locals<'a>(
    m: LocalsMemory,
    locals: &[ValType],
    params: usize,
    results: &[ValType],
    code: Vec<Instruction<'a>>,
) -> Result<(Vec<ValType>, Vec<Instruction<'a>>)> {
    let body_type = match results {
        [] => BlockType::Empty,
        [t] => BlockType::Result(enc(*t)?),
        _ => {
            return Err(Error::Encode(
                "locals in memory for a function with several results".into(),
            ))
        }
    };
    // Largest slots first keeps every slot naturally aligned in a 16-aligned frame.
    let mut slots: Vec<Option<u32>> = vec![None; locals.len()];
    let mut size = 0u32;
    for width in [16u32, 8, 4] {
        for (i, t) in locals.iter().enumerate() {
            if slot_width(*t) == Some(width) {
                slots[i] = Some(size);
                size += width;
            }
        }
    }
    let size = size.div_ceil(16) * 16;
    // Reference locals of the three classes get an entry in their class's table.
    let mut ref_slots: Vec<Option<(usize, u32)>> = vec![None; locals.len()];
    let mut ref_counts = [0u32; 3];
    for (i, t) in locals.iter().enumerate() {
        if let ValType::Ref(r) = t {
            if let Some(c) = REF_TABLE_TYPES.iter().position(|x| x == r) {
                ref_slots[i] = Some((c, ref_counts[c]));
                ref_counts[c] += 1;
            }
        }
    }

    let base = locals.len() as u32;
    let fp = base;
    let scratch_types = [
        ValType::I32,
        ValType::I64,
        ValType::F32,
        ValType::F64,
        ValType::V128,
        ValType::Ref(REF_TABLE_TYPES[0]),
        ValType::Ref(REF_TABLE_TYPES[1]),
        ValType::Ref(REF_TABLE_TYPES[2]),
    ];
    let scratch = |t: ValType| -> u32 {
        base + 1 + scratch_types.iter().position(|s| *s == t).unwrap_or(0) as u32
    };
    // One frame pointer per reference class, after the scratch locals.
    let rfp = |c: usize| base + 1 + scratch_types.len() as u32 + c as u32;
    let mut new_locals = vec![ValType::I32];
    new_locals.extend(scratch_types);
    new_locals.extend([ValType::I32; 3]);

    let mut out: Vec<Instruction<'a>> = Vec::with_capacity(code.len() * 2 + 32);
    // Take a frame, growing the memory when it would not fit, and zero it: wasm locals start
    // at zero, and the bytes may be an earlier call's.
    out.extend([
        Instruction::GlobalGet(m.sp_global),
        Instruction::LocalTee(fp),
        Instruction::I32Const(size as i32),
        Instruction::I32Add,
        Instruction::GlobalSet(m.sp_global),
        Instruction::GlobalGet(m.sp_global),
        Instruction::MemorySize(m.memory),
        Instruction::I32Const(16),
        Instruction::I32Shl,
        Instruction::I32GtU,
        Instruction::If(BlockType::Empty),
        Instruction::I32Const((size >> 16) as i32 + 1),
        Instruction::MemoryGrow(m.memory),
        Instruction::I32Const(-1),
        Instruction::I32Eq,
        Instruction::If(BlockType::Empty),
        Instruction::Unreachable,
        Instruction::End,
        Instruction::End,
        Instruction::LocalGet(fp),
        Instruction::I32Const(0),
        Instruction::I32Const(size as i32),
        Instruction::MemoryFill(m.memory),
    ]);
    let mut release = vec![
        Instruction::LocalGet(fp),
        Instruction::GlobalSet(m.sp_global),
    ];
    for (c, &n) in ref_counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let (table, sp) = m.ref_tables[c];
        let null = Instruction::RefNull(heap(c));
        out.extend([
            Instruction::GlobalGet(sp),
            Instruction::LocalTee(rfp(c)),
            Instruction::I32Const(n as i32),
            Instruction::I32Add,
            Instruction::GlobalSet(sp),
            Instruction::GlobalGet(sp),
            Instruction::TableSize(table),
            Instruction::I32GtU,
            Instruction::If(BlockType::Empty),
            null.clone(),
            Instruction::I32Const(n as i32),
            Instruction::TableGrow(table),
            Instruction::I32Const(-1),
            Instruction::I32Eq,
            Instruction::If(BlockType::Empty),
            Instruction::Unreachable,
            Instruction::End,
            Instruction::End,
            Instruction::LocalGet(rfp(c)),
            null,
            Instruction::I32Const(n as i32),
            Instruction::TableFill(table),
        ]);
        release.extend([Instruction::LocalGet(rfp(c)), Instruction::GlobalSet(sp)]);
    }
    for (p, t) in locals.iter().enumerate().take(params) {
        if let Some(off) = slots[p] {
            out.push(Instruction::LocalGet(fp));
            out.push(Instruction::LocalGet(p as u32));
            out.push(store(*t, m.memory, off)?);
        }
        if let Some((c, k)) = ref_slots[p] {
            out.extend([
                Instruction::LocalGet(rfp(c)),
                Instruction::I32Const(k as i32),
                Instruction::I32Add,
                Instruction::LocalGet(p as u32),
                Instruction::TableSet(m.ref_tables[c].0),
            ]);
        }
    }
    // Whenever this function's own code runs, the free space starts right after its frames.
    // A callee left by an exception did not give its frames back, so where an exception can
    // land here (a catch's target: after a block's end, or a loop's top) the tops are set again.
    let mut reset = vec![
        Instruction::LocalGet(fp),
        Instruction::I32Const(size as i32),
        Instruction::I32Add,
        Instruction::GlobalSet(m.sp_global),
    ];
    for (c, &n) in ref_counts.iter().enumerate() {
        if n > 0 {
            reset.extend([
                Instruction::LocalGet(rfp(c)),
                Instruction::I32Const(n as i32),
                Instruction::I32Add,
                Instruction::GlobalSet(m.ref_tables[c].1),
            ]);
        }
    }
    // The body becomes a block, so that every way out passes the release: branches to the
    // function's label now leave this block (same depth), and `return` becomes such a branch.
    out.push(Instruction::Block(body_type));
    // Per open construct: whether a catch lands after its end.
    let mut open: Vec<bool> = Vec::new();
    let mut ended = false;
    for ins in code {
        if ended {
            return Err(Error::Encode(
                "instructions after the function's end".into(),
            ));
        }
        match ins {
            Instruction::Block(_) | Instruction::If(_) | Instruction::Try(_) => {
                open.push(false);
                out.push(ins);
            }
            Instruction::Loop(_) => {
                open.push(false);
                out.push(ins);
                out.extend(reset.iter().cloned());
            }
            Instruction::TryTable(_, ref catches) => {
                // Catch labels count from the construct around the try_table.
                for c in catches.iter() {
                    let label = match c {
                        wasm_encoder::Catch::One { label, .. }
                        | wasm_encoder::Catch::OneRef { label, .. }
                        | wasm_encoder::Catch::All { label }
                        | wasm_encoder::Catch::AllRef { label } => *label as usize,
                    };
                    if label < open.len() {
                        let at = open.len() - 1 - label;
                        open[at] = true;
                    }
                }
                open.push(false);
                out.push(ins);
            }
            Instruction::End | Instruction::Delegate(_) => {
                out.push(ins);
                match open.pop() {
                    None => ended = true,
                    Some(true) => out.extend(reset.iter().cloned()),
                    Some(false) => {}
                }
            }
            Instruction::Return => out.push(Instruction::Br(open.len() as u32)),
            Instruction::ReturnCall(_)
            | Instruction::ReturnCallIndirect { .. }
            | Instruction::ReturnCallRef(_) => {
                out.extend(release.iter().cloned());
                out.push(ins);
            }
            Instruction::LocalGet(i) => match (slot(&slots, locals, i), ref_slot(&ref_slots, i)) {
                (Some((t, off)), _) => {
                    out.push(Instruction::LocalGet(fp));
                    out.push(load(t, m.memory, off)?);
                }
                (None, Some((c, k))) => out.extend([
                    Instruction::LocalGet(rfp(c)),
                    Instruction::I32Const(k as i32),
                    Instruction::I32Add,
                    Instruction::TableGet(m.ref_tables[c].0),
                ]),
                (None, None) => out.push(ins),
            },
            Instruction::LocalSet(i) | Instruction::LocalTee(i) => {
                let tee = matches!(ins, Instruction::LocalTee(_));
                match (slot(&slots, locals, i), ref_slot(&ref_slots, i)) {
                    (Some((t, off)), _) => {
                        let s = scratch(t);
                        out.push(Instruction::LocalSet(s));
                        out.push(Instruction::LocalGet(fp));
                        out.push(Instruction::LocalGet(s));
                        out.push(store(t, m.memory, off)?);
                        if tee {
                            out.push(Instruction::LocalGet(s));
                        }
                    }
                    (None, Some((c, k))) => {
                        let s = scratch(ValType::Ref(REF_TABLE_TYPES[c]));
                        out.extend([
                            Instruction::LocalSet(s),
                            Instruction::LocalGet(rfp(c)),
                            Instruction::I32Const(k as i32),
                            Instruction::I32Add,
                            Instruction::LocalGet(s),
                            Instruction::TableSet(m.ref_tables[c].0),
                        ]);
                        if tee {
                            out.push(Instruction::LocalGet(s));
                        }
                    }
                    (None, None) => out.push(ins),
                }
            }
            other => out.push(other),
        }
    }
    if !ended {
        return Err(Error::Encode("function body has no end".into()));
    }
    out.extend(release);
    out.push(Instruction::End);
    Ok((new_locals, out))
}

fn slot(slots: &[Option<u32>], locals: &[ValType], i: u32) -> Option<(ValType, u32)> {
    let off = (*slots.get(i as usize)?)?;
    Some((locals[i as usize], off))
}

fn ref_slot(slots: &[Option<(usize, u32)>], i: u32) -> Option<(usize, u32)> {
    *slots.get(i as usize)?
}

fn heap(class: usize) -> wasm_encoder::HeapType {
    use wasm_encoder::{AbstractHeapType as A, HeapType};
    let ty = [A::Func, A::Extern, A::Exn][class.min(2)];
    HeapType::Abstract { shared: false, ty }
}

fn slot_width(t: ValType) -> Option<u32> {
    match t {
        ValType::I32 | ValType::F32 => Some(4),
        ValType::I64 | ValType::F64 => Some(8),
        ValType::V128 => Some(16),
        ValType::Ref(_) => None,
    }
}

fn memarg(memory: u32, off: u32, width: u32) -> MemArg {
    MemArg {
        offset: off as u64,
        align: width.trailing_zeros(),
        memory_index: memory,
    }
}

fn load(t: ValType, memory: u32, off: u32) -> Result<Instruction<'static>> {
    access(t, memory, off, false)
}

fn store(t: ValType, memory: u32, off: u32) -> Result<Instruction<'static>> {
    access(t, memory, off, true)
}

fn access(t: ValType, memory: u32, off: u32, store: bool) -> Result<Instruction<'static>> {
    use Instruction as I;
    let Some(width) = slot_width(t) else {
        return Err(Error::Encode("a reference local in memory".into()));
    };
    let m = memarg(memory, off, width);
    Ok(match (t, store) {
        (ValType::I32, false) => I::I32Load(m),
        (ValType::I32, true) => I::I32Store(m),
        (ValType::I64, false) => I::I64Load(m),
        (ValType::I64, true) => I::I64Store(m),
        (ValType::F32, false) => I::F32Load(m),
        (ValType::F32, true) => I::F32Store(m),
        (ValType::F64, false) => I::F64Load(m),
        (ValType::F64, true) => I::F64Store(m),
        (ValType::V128, false) => I::V128Load(m),
        (ValType::V128, true) => I::V128Store(m),
        (ValType::Ref(_), _) => return Err(Error::Encode("a reference local in memory".into())),
    })
}

fn enc(t: ValType) -> Result<EncType> {
    RoundtripReencoder
        .val_type(t)
        .map_err(|e| Error::Encode(e.to_string()))
}
