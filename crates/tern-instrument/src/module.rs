//! Module-level work: parse and validate, scan every function, decide what to rewrite, rewrite
//! in parallel, and assemble the output with Tern's globals, memories, tables and exports added.
//!
//! Nothing already in the module is renumbered: Tern's additions go after the module's own
//! globals, memories, tables and functions (a rewritten function keeps its index for its
//! running form; its rewinding form is appended), so untouched function bodies, the element
//! segments and the name section are copied byte for byte.

use std::collections::HashMap;

use rayon::prelude::*;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    ConstExpr, ExportKind, ExportSection, GlobalSection, GlobalType, MemorySection, MemoryType,
    Module, RawSection, RefType, TableSection, TableType,
};
use wasmparser::{
    FuncToValidate, FunctionBody, KnownCustom, Name, Operator, Parser, Payload, TypeRef, Validator,
    ValidatorResources, WasmFeatures,
};

use crate::analysis::{FuncScan, Graph};
use crate::body::{rewrite, ModuleFacts, Rewritten};
use crate::*;

/// Rewrite `wasm` so that it can be captured and resumed (see the crate documentation).
pub fn instrument(wasm: &[u8], options: &Options) -> Result<Instrumented> {
    let mut parsed = Parsed::read(wasm)?;
    parsed.refuse_unmigratable()?;
    let bodies: Vec<&FunctionBody<'_>> = parsed.bodies.iter().map(|(b, _)| b).collect();
    let scans: Vec<BodyScan> = bodies.par_iter().map(|b| scan(b)).collect::<Result<_>>()?;
    let mut address_taken = vec![false; parsed.func_types.len()];
    for &f in parsed
        .ref_funcs
        .iter()
        .chain(scans.iter().flat_map(|s| s.ref_funcs.iter()))
    {
        if let Some(t) = address_taken.get_mut(f as usize) {
            *t = true;
        }
    }
    let mut external = vec![false; parsed.func_types.len()];
    for &f in parsed.exported_funcs.iter().chain(parsed.start.iter()) {
        if let Some(e) = external.get_mut(f as usize) {
            *e = true;
        }
    }
    let (type_sig, sig_count) = signatures(&parsed.types);
    let graph = Graph {
        imported: parsed.imported_funcs.len() as u32,
        func_sig: parsed
            .func_types
            .iter()
            .map(|&t| type_sig.get(t as usize).copied().flatten().unwrap_or(0))
            .collect(),
        sig_count,
        import_captures: parsed
            .imported_funcs
            .iter()
            .map(|(m, n)| {
                options
                    .capturing_imports
                    .iter()
                    .any(|(cm, cn)| cm == m && cn == n)
            })
            .collect(),
        scans: scans.iter().map(|s| s.graph.clone()).collect(),
        address_taken,
        external,
    };
    let analysis = graph.analyse();

    let n = parsed.counts;
    // Every function that can unwind gets a rewind entry after Tern's helper, in index order:
    // its rewinding form, or a thunk to its only form.
    let funcs = parsed.func_types.len() as u32;
    let mut rewind_entry: Vec<u32> = (0..funcs).collect();
    let mut next_entry = funcs + 1;
    for f in graph.imported..funcs {
        if analysis.unwinds[f as usize] {
            rewind_entry[f as usize] = next_entry;
            next_entry += 1;
        }
    }
    // Then a trampoline for every function rewound directly.
    let mut trampoline: Vec<u32> = (0..funcs).collect();
    let mut next_trampoline = next_entry;
    for f in graph.imported..funcs {
        if analysis.direct_rewind[f as usize] {
            trampoline[f as usize] = next_trampoline;
            next_trampoline += 1;
        }
    }
    let facts = ModuleFacts {
        types: &parsed.types,
        func_types: &parsed.func_types,
        unwinds: &analysis.unwinds,
        type_sig: &type_sig,
        sig_unwinds: &analysis.sig_unwinds,
        flag_memory: n.memories,
        frames_memory: n.memories + 1,
        state_global: n.globals,
        sp_global: n.globals + 1,
        headroom_func: parsed.func_types.len() as u32,
        ref_tables: [
            (n.tables, n.globals + 2),
            (n.tables + 1, n.globals + 3),
            (n.tables + 2, n.globals + 4),
        ],
        locals_memory: crate::frame_memory::LocalsMemory {
            memory: n.memories + 2,
            sp_global: n.globals + 5,
            ref_tables: [
                (n.tables + 3, n.globals + 6),
                (n.tables + 4, n.globals + 7),
                (n.tables + 5, n.globals + 8),
            ],
        },
        locals_in_memory_above: options
            .locals_in_memory_above
            .unwrap_or(crate::frame_memory::LOCALS_TIMES_POINTS),
        two_forms_up_to: options
            .two_forms_up_to
            .unwrap_or(crate::body::TWO_FORMS_UP_TO),
        rewind_entry: &rewind_entry,
        lean: &analysis.lean,
        trampoline: &trampoline,
        component: &analysis.component,
    };
    for (i, s) in scans.iter().enumerate() {
        let f = graph.imported as usize + i;
        if analysis.unwinds[f] {
            if let Some(what) = &s.unmigratable {
                return Err(Error::Unsupported(format!("{what} (in function {f})")));
            }
        }
    }
    let imported = graph.imported;
    let bodies = std::mem::take(&mut parsed.bodies);
    let rewritten: Vec<Result<Rewritten>> = bodies
        .into_par_iter()
        .enumerate()
        .map(|(i, (body, validator))| {
            let f = imported + i as u32;
            if !analysis.unwinds[f as usize] {
                let range = body.range();
                return Ok(Rewritten {
                    body: wasm[range.start..range.end].to_vec(),
                    rewind_body: Vec::new(),
                    two_forms: false,
                    resume_points: 0,
                    polls: 0,
                    locals_in_memory: false,
                    frame_size: 0,
                    counted_loops: 0,
                    unrolled_loops: 0,
                    cold_ifs: Vec::new(),
                });
            }
            let v = validator.into_validator(Default::default());
            rewrite(&facts, f, analysis.entry_poll[i], &body, v)
        })
        .collect();
    let mut stats = Stats {
        functions: scans.len() as u32,
        ..Default::default()
    };
    let mut code = wasm_encoder::CodeSection::new();
    let mut entries = Vec::new();
    let mut largest_frame = 0u32;
    let mut hints = wasm_encoder::BranchHints::new();
    for (i, r) in rewritten.into_iter().enumerate() {
        let r = r?;
        let f = imported as usize + i;
        if analysis.unwinds[f] {
            stats.instrumented += 1;
            stats.resume_points += r.resume_points;
            stats.polls += r.polls;
            stats.locals_in_memory += u32::from(r.locals_in_memory);
            stats.two_forms += u32::from(r.two_forms);
            largest_frame = largest_frame.max(r.frame_size);
            stats.counted_loops += r.counted_loops;
            stats.unrolled_loops += r.unrolled_loops;
            if !r.cold_ifs.is_empty() {
                hints.function_hints(
                    f as u32,
                    r.cold_ifs.iter().map(|&at| wasm_encoder::BranchHint {
                        branch_func_offset: at,
                        branch_hint_value: 0,
                    }),
                );
            }
            entries.push((parsed.func_types[f], r.rewind_body));
        }
        code.raw(&r.body);
    }
    code.function(&headroom_body(&facts, largest_frame));
    let mut entry_types: Vec<u32> = entries.iter().map(|(t, _)| *t).collect();
    for (_, body) in &entries {
        code.raw(body);
    }
    for f in graph.imported..funcs {
        if trampoline[f as usize] != f {
            let ty = parsed.func_types[f as usize];
            let params = parsed.types[ty as usize]
                .as_ref()
                .map_or(0, |t| t.params().len() as u32);
            code.function(&trampoline_body(&facts, f, params));
            entry_types.push(ty);
        }
    }
    let out = assemble(wasm, &parsed, code, &hints, &entry_types, largest_frame)?;
    Ok(Instrumented {
        wasm: out,
        globals: parsed.mutable_globals.clone(),
        memories: (n.imported_memories..n.memories).collect(),
        has_start: parsed.start.is_some(),
        stats,
        function_names: parsed.names,
    })
}

#[derive(Clone, Copy, Default)]
struct Counts {
    tables: u32,
    memories: u32,
    globals: u32,
    imported_memories: u32,
}

struct Parsed<'a> {
    types: Vec<Option<wasmparser::FuncType>>,
    imported_funcs: Vec<(String, String)>,
    other_imports: Vec<String>,
    func_types: Vec<u32>,
    counts: Counts,
    shared_memory: bool,
    mutable_globals: Vec<(u32, GlobalKind)>,
    unsupported_global: Option<String>,
    start: Option<u32>,
    exported_funcs: Vec<u32>,
    ref_funcs: Vec<u32>,
    bodies: Vec<(FunctionBody<'a>, FuncToValidate<ValidatorResources>)>,
    names: Vec<(u32, String)>,
    /// (section id, byte range of its contents) in file order.
    sections: Vec<(u8, std::ops::Range<usize>)>,
}

impl<'a> Parsed<'a> {
    fn read(wasm: &'a [u8]) -> Result<Self> {
        let mut v = Validator::new_with_features(WasmFeatures::all());
        let mut p = Parsed {
            types: Vec::new(),
            imported_funcs: Vec::new(),
            other_imports: Vec::new(),
            func_types: Vec::new(),
            counts: Counts::default(),
            shared_memory: false,
            mutable_globals: Vec::new(),
            unsupported_global: None,
            start: None,
            exported_funcs: Vec::new(),
            ref_funcs: Vec::new(),
            bodies: Vec::new(),
            names: Vec::new(),
            sections: Vec::new(),
        };
        for payload in Parser::new(0).parse_all(wasm) {
            let payload = payload?;
            if let Some((id, range)) = payload.as_section() {
                p.sections.push((id, range));
            }
            match &payload {
                Payload::Version { encoding, .. } if *encoding != wasmparser::Encoding::Module => {
                    return Err(Error::Unsupported(
                        "a component (Tern runs core modules)".into(),
                    ))
                }
                Payload::TypeSection(r) => {
                    for group in r.clone() {
                        for sub in group?.into_types() {
                            p.types.push(match sub.composite_type.inner {
                                wasmparser::CompositeInnerType::Func(f) => Some(f),
                                _ => None,
                            });
                        }
                    }
                }
                Payload::ImportSection(r) => {
                    for imp in r.clone().into_imports() {
                        let imp = imp?;
                        match imp.ty {
                            TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                                p.imported_funcs
                                    .push((imp.module.to_string(), imp.name.to_string()));
                                p.func_types.push(t);
                            }
                            TypeRef::Memory(m) => {
                                p.counts.memories += 1;
                                p.counts.imported_memories += 1;
                                p.shared_memory |= m.shared;
                                p.other_imports.push(format!("{}.{}", imp.module, imp.name));
                            }
                            TypeRef::Table(_) => {
                                p.counts.tables += 1;
                                p.other_imports.push(format!("{}.{}", imp.module, imp.name));
                            }
                            TypeRef::Global(_) => {
                                p.counts.globals += 1;
                                p.other_imports.push(format!("{}.{}", imp.module, imp.name));
                            }
                            TypeRef::Tag(_) => {
                                p.other_imports.push(format!("{}.{}", imp.module, imp.name))
                            }
                        }
                    }
                }
                Payload::FunctionSection(r) => {
                    for t in r.clone() {
                        p.func_types.push(t?);
                    }
                }
                Payload::TableSection(r) => {
                    for t in r.clone() {
                        t?;
                        p.counts.tables += 1;
                    }
                }
                Payload::MemorySection(r) => {
                    for m in r.clone() {
                        p.shared_memory |= m?.shared;
                        p.counts.memories += 1;
                    }
                }
                Payload::GlobalSection(r) => {
                    for g in r.clone() {
                        let g = g?;
                        let index = p.counts.globals;
                        p.counts.globals += 1;
                        collect_ref_funcs(&g.init_expr, &mut p.ref_funcs)?;
                        if !g.ty.mutable {
                            continue;
                        }
                        let kind = match g.ty.content_type {
                            wasmparser::ValType::I32 => GlobalKind::I32,
                            wasmparser::ValType::I64 => GlobalKind::I64,
                            wasmparser::ValType::F32 => GlobalKind::F32,
                            wasmparser::ValType::F64 => GlobalKind::F64,
                            wasmparser::ValType::V128 => GlobalKind::V128,
                            wasmparser::ValType::Ref(r) => {
                                p.unsupported_global =
                                    Some(format!("a mutable global of type {r}"));
                                continue;
                            }
                        };
                        p.mutable_globals.push((index, kind));
                    }
                }
                Payload::StartSection { func, .. } => p.start = Some(*func),
                Payload::ExportSection(r) => {
                    for e in r.clone() {
                        let e = e?;
                        if e.kind == wasmparser::ExternalKind::Func {
                            p.exported_funcs.push(e.index);
                        }
                    }
                }
                Payload::ElementSection(r) => {
                    for e in r.clone() {
                        match e?.items {
                            wasmparser::ElementItems::Functions(fs) => {
                                for f in fs {
                                    p.ref_funcs.push(f?);
                                }
                            }
                            wasmparser::ElementItems::Expressions(_, es) => {
                                for e in es {
                                    collect_ref_funcs(&e?, &mut p.ref_funcs)?;
                                }
                            }
                        }
                    }
                }
                Payload::CustomSection(c) => {
                    if let KnownCustom::Name(names) = c.as_known() {
                        for n in names.into_iter().flatten() {
                            if let Name::Function(map) = n {
                                for naming in map.into_iter().flatten() {
                                    p.names.push((naming.index, naming.name.to_string()));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
            match v.payload(&payload)? {
                wasmparser::ValidPayload::Func(func, body) => p.bodies.push((body, func)),
                wasmparser::ValidPayload::End(_) => break,
                _ => {}
            }
        }
        Ok(p)
    }

    fn refuse_unmigratable(&self) -> Result<()> {
        if self.shared_memory {
            return Err(Error::Unsupported("a shared memory (threads)".into()));
        }
        if let Some(what) = &self.unsupported_global {
            return Err(Error::Unsupported(what.clone()));
        }
        if let Some(imp) = self.other_imports.first() {
            return Err(Error::Unsupported(format!(
                "an import that is not a function ({imp})"
            )));
        }
        Ok(())
    }
}

fn collect_ref_funcs(expr: &wasmparser::ConstExpr<'_>, out: &mut Vec<u32>) -> Result<()> {
    for op in expr.get_operators_reader() {
        if let Operator::RefFunc { function_index } = op? {
            out.push(function_index);
        }
    }
    Ok(())
}

/// Structurally equal function types share a signature id: `call_indirect` matches by structure.
fn signatures(types: &[Option<wasmparser::FuncType>]) -> (Vec<Option<u32>>, u32) {
    let mut ids: HashMap<&wasmparser::FuncType, u32> = HashMap::new();
    let mut out = Vec::with_capacity(types.len());
    for t in types {
        out.push(t.as_ref().map(|t| {
            let next = ids.len() as u32;
            *ids.entry(t).or_insert(next)
        }));
    }
    let count = ids.len() as u32;
    (out, count.max(1))
}

struct BodyScan {
    graph: FuncScan,
    ref_funcs: Vec<u32>,
    unmigratable: Option<String>,
}

fn scan(body: &FunctionBody<'_>) -> Result<BodyScan> {
    let mut s = BodyScan {
        graph: FuncScan::default(),
        ref_funcs: Vec::new(),
        unmigratable: None,
    };
    for op in body.get_operators_reader()? {
        match op? {
            Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
                s.graph.direct_calls.push(function_index)
            }
            Operator::CallIndirect { type_index, .. }
            | Operator::ReturnCallIndirect { type_index, .. }
            | Operator::CallRef { type_index }
            | Operator::ReturnCallRef { type_index } => s.graph.indirect_sigs.push(type_index),
            Operator::Loop { .. } => s.graph.has_loop = true,
            Operator::TryTable { try_table } if !try_table.catches.is_empty() => {
                s.graph.catches = true
            }
            Operator::RefFunc { function_index } => s.ref_funcs.push(function_index),
            Operator::TableSet { .. }
            | Operator::TableGrow { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. } => {
                s.unmigratable = Some("an instruction that changes a table at run time".into())
            }
            Operator::Try { .. } | Operator::Delegate { .. } => {
                s.unmigratable = Some("legacy exception handling (try/catch/delegate)".into())
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Rank of a known section in the order the binary format requires.
fn rank(id: u8) -> Option<u8> {
    Some(match id {
        1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        5 => 5,
        13 => 6,
        6 => 7,
        7 => 8,
        8 => 9,
        9 => 10,
        12 => 11,
        10 => 12,
        11 => 13,
        _ => return None,
    })
}

/// What rewinding forms call instead of `f`, a function rewound directly (whose running form
/// does not look for a rewind on entry): a rewind goes on in `f`'s rewind entry, anything else
/// runs `f`. Both by tail call, with the arguments as they came.
fn trampoline_body(facts: &ModuleFacts<'_>, f: u32, params: u32) -> wasm_encoder::Function {
    use wasm_encoder::Instruction as I;
    let mut b = wasm_encoder::Function::new([]);
    b.instruction(&I::GlobalGet(facts.state_global));
    b.instruction(&I::I32Const(crate::STATE_REWINDING));
    b.instruction(&I::I32Eq);
    b.instruction(&I::If(wasm_encoder::BlockType::Empty));
    for k in 0..params {
        b.instruction(&I::LocalGet(k));
    }
    b.instruction(&I::ReturnCall(facts.rewind_entry[f as usize]));
    b.instruction(&I::End);
    for k in 0..params {
        b.instruction(&I::LocalGet(k));
    }
    b.instruction(&I::ReturnCall(f));
    b.instruction(&I::End);
    b
}

/// `() -> ()`, called after each saved frame (see `ModuleFacts::headroom_func`): grow the frames
/// memory until `largest_frame` bytes fit above the frame stack's top. If it cannot grow, the
/// next save traps out of bounds, which fails the capture rather than corrupting it.
fn headroom_body(f: &ModuleFacts<'_>, largest_frame: u32) -> wasm_encoder::Function {
    use wasm_encoder::Instruction as I;
    // local 0: the bytes needed minus the bytes there, as i64 (4 GiB does not fit an i32).
    let mut b = wasm_encoder::Function::new([(1, wasm_encoder::ValType::I64)]);
    for i in [
        I::GlobalGet(f.sp_global),
        I::I64ExtendI32U,
        I::I64Const(i64::from(largest_frame)),
        I::I64Add,
        I::MemorySize(f.frames_memory),
        I::I64ExtendI32U,
        I::I64Const(16),
        I::I64Shl,
        I::I64Sub,
        I::LocalTee(0),
        I::I64Const(0),
        I::I64GtS,
        I::If(wasm_encoder::BlockType::Empty),
        I::LocalGet(0),
        I::I64Const(65535),
        I::I64Add,
        I::I64Const(16),
        I::I64ShrU,
        I::I32WrapI64,
        I::MemoryGrow(f.frames_memory),
        I::Drop,
        I::End,
        I::End,
    ] {
        b.instruction(&i);
    }
    b
}

fn assemble(
    wasm: &[u8],
    p: &Parsed<'_>,
    code: wasm_encoder::CodeSection,
    hints: &wasm_encoder::BranchHints,
    entry_types: &[u32],
    largest_frame: u32,
) -> Result<Vec<u8>> {
    let enc = |e: wasm_encoder::reencode::Error| Error::Encode(e.to_string());
    let n = p.counts;
    let mut tables = TableSection::new();
    let mut memories = MemorySection::new();
    let mut globals = GlobalSection::new();
    let mut exports = ExportSection::new();
    for (id, range) in &p.sections {
        let data = &wasm[range.clone()];
        let reader = wasmparser::BinaryReader::new(data, range.start);
        match id {
            4 => RoundtripReencoder
                .parse_table_section(&mut tables, wasmparser::TableSectionReader::new(reader)?)
                .map_err(enc)?,
            5 => RoundtripReencoder
                .parse_memory_section(&mut memories, wasmparser::MemorySectionReader::new(reader)?)
                .map_err(enc)?,
            6 => RoundtripReencoder
                .parse_global_section(&mut globals, wasmparser::GlobalSectionReader::new(reader)?)
                .map_err(enc)?,
            7 => RoundtripReencoder
                .parse_export_section(&mut exports, wasmparser::ExportSectionReader::new(reader)?)
                .map_err(enc)?,

            _ => {}
        }
    }
    // The reference-local tables, then the locals tables of `frame_memory`.
    for rt in [RefType::FUNCREF, RefType::EXTERNREF, RefType::EXNREF]
        .into_iter()
        .cycle()
        .take(6)
    {
        tables.table(TableType {
            element_type: rt,
            table64: false,
            minimum: 0,
            maximum: None,
            shared: false,
        });
    }
    // The flag memory is 64-bit and unbounded, so the compiler treats its base as movable and
    // loads it afresh at each poll instead of keeping it in a register: kept, it was held across
    // calls (in callee-saved registers, pushing the program's own values onto the stack).
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: true,
        shared: false,
        page_size_log2: None,
    });
    let flag = MemoryType {
        minimum: 1,
        maximum: Some(1),
        memory64: false,
        shared: false,
        page_size_log2: None,
    };
    // The frames memory starts with room for the largest frame (see `headroom_body`).
    memories.memory(MemoryType {
        minimum: (u64::from(largest_frame) + 65535) >> 16,
        maximum: None,
        ..flag
    });
    // The locals memory (see `frame_memory`): grown on demand, never captured.
    memories.memory(MemoryType {
        minimum: 0,
        maximum: None,
        ..flag
    });
    for _ in 0..9 {
        globals.global(
            GlobalType {
                val_type: wasm_encoder::ValType::I32,
                mutable: true,
                shared: false,
            },
            &ConstExpr::i32_const(0),
        );
    }
    exports.export(STATE_EXPORT, ExportKind::Global, n.globals);
    exports.export(SP_EXPORT, ExportKind::Global, n.globals + 1);
    exports.export(FLAG_EXPORT, ExportKind::Memory, n.memories);
    exports.export(FRAMES_EXPORT, ExportKind::Memory, n.memories + 1);
    for (k, name) in ["func", "extern", "exn"].iter().enumerate() {
        exports.export(
            &format!("{REF_TABLE_EXPORT_PREFIX}{name}"),
            ExportKind::Table,
            n.tables + k as u32,
        );
        exports.export(
            &format!("{REF_SP_EXPORT_PREFIX}{name}"),
            ExportKind::Global,
            n.globals + 2 + k as u32,
        );
    }
    for (g, _) in &p.mutable_globals {
        exports.export(
            &format!("{GLOBAL_EXPORT_PREFIX}{g}"),
            ExportKind::Global,
            *g,
        );
    }
    for m in n.imported_memories..n.memories {
        exports.export(&format!("{MEMORY_EXPORT_PREFIX}{m}"), ExportKind::Memory, m);
    }
    if let Some(start) = p.start {
        exports.export(START_EXPORT, ExportKind::Func, start);
    }

    let mut module = Module::new();
    let mut done = [false; 4];
    let ours = [4u8, 5, 7, 8];
    let mut code = Some(code);
    let flush = |module: &mut Module, upto: u8, done: &mut [bool; 4]| {
        for (k, r) in ours.iter().enumerate() {
            if *r < upto && !done[k] {
                match r {
                    4 => module.section(&tables),
                    5 => module.section(&memories),
                    7 => module.section(&globals),
                    _ => module.section(&exports),
                };
                done[k] = true;
            }
        }
    };
    for (id, range) in &p.sections {
        let Some(r) = rank(*id) else {
            if *id == 0 {
                let reader = wasmparser::BinaryReader::new(&wasm[range.clone()], range.start);
                if wasmparser::CustomSectionReader::new(reader)?.name()
                    == "metadata.code.branch_hint"
                {
                    // Its offsets point into the original bodies; Tern writes its own.
                    continue;
                }
            }
            module.section(&RawSection {
                id: *id,
                data: &wasm[range.clone()],
            });
            continue;
        };
        flush(&mut module, r + 1, &mut done);
        match id {
            4..=8 => {}
            1 => {
                let mut types = wasm_encoder::TypeSection::new();
                RoundtripReencoder
                    .parse_type_section(
                        &mut types,
                        wasmparser::TypeSectionReader::new(wasmparser::BinaryReader::new(
                            &wasm[range.clone()],
                            range.start,
                        ))?,
                    )
                    .map_err(enc)?;
                types.ty().function([], []);
                module.section(&types);
            }
            3 => {
                let mut funcs = wasm_encoder::FunctionSection::new();
                for t in wasmparser::FunctionSectionReader::new(wasmparser::BinaryReader::new(
                    &wasm[range.clone()],
                    range.start,
                ))? {
                    funcs.function(t?);
                }
                funcs.function(p.types.len() as u32);
                for &t in entry_types {
                    funcs.function(t);
                }
                module.section(&funcs);
            }
            10 => {
                if let Some(c) = code.take() {
                    // Tern's hints; the program's own, if any, were for the original bodies.
                    if !hints.is_empty() {
                        module.section(hints);
                    }
                    module.section(&c);
                }
            }
            _ => {
                module.section(&RawSection {
                    id: *id,
                    data: &wasm[range.clone()],
                });
            }
        }
    }
    flush(&mut module, u8::MAX, &mut done);
    Ok(module.finish())
}
