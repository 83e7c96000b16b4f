//! The per-function rewrite: makes one function able to save its frame and return (unwind), and
//! later to rebuild that frame and jump back into the middle of its body (rewind).
//!
//! Structured control flow forbids jumping into a block, so the rewind enters every enclosing
//! block from its top and skips what it must not re-execute. The body of every block that
//! contains a resume point is cut into *segments* separated by *items* (a call that may unwind,
//! a poll, or a nested block that contains one). At every item boundary the block's operand
//! stack lives in locals (spill slots, one per nesting depth, stack position and type), so a
//! segment has the type `[] -> []` and can be wrapped in `if (state == running)`. Saving every
//! local therefore saves the operand stack too, and the rewind only has to skip segments and the
//! items that do not contain the target resume point.

use std::collections::{HashMap, HashSet};

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType, Function, Instruction, MemArg};
use wasmparser::{
    AbstractHeapType, FuncValidator, FunctionBody, HeapType, Operator, RefType, ValType,
    ValidatorResources,
};

use crate::liveness::{liveness, spent_after, Liveness};
use crate::{counted, frame_memory};
use crate::{Error, Result, STATE_REWINDING};

/// Module-level facts the rewrite needs.
pub struct ModuleFacts<'a> {
    pub types: &'a [Option<wasmparser::FuncType>],
    pub func_types: &'a [u32],
    pub unwinds: &'a [bool],
    /// Signature id per type index (for indirect calls).
    pub type_sig: &'a [Option<u32>],
    pub sig_unwinds: &'a [bool],
    pub flag_memory: u32,
    pub frames_memory: u32,
    pub state_global: u32,
    pub sp_global: u32,
    /// Tern's helper `() -> ()` that grows the frames memory, after a frame is saved, until
    /// the largest frame of the module fits above the frame stack's top. A save therefore
    /// stores at the top without a call: a call on the save path, inside a hot loop's poll,
    /// made Cranelift keep the loop's values where the call could not clobber them (floating-
    /// point ones on the stack), and cost every iteration.
    pub headroom_func: u32,
    /// (table, stack-pointer global) for funcref, externref and exnref locals.
    pub ref_tables: [(u32, u32); 3],
    /// Where functions too large to compile with their locals as variables keep them.
    pub locals_memory: frame_memory::LocalsMemory,
    /// Numeric locals times resume points above which a function keeps its locals in memory.
    pub locals_in_memory_above: usize,
    /// Numeric locals times resume points up to which a function gets a running form.
    pub two_forms_up_to: usize,
    /// Per function index: where a rewind continues when it reaches the function (its
    /// rewinding form, or a thunk to its only form), or the function itself when it cannot
    /// unwind.
    pub rewind_entry: &'a [u32],
    /// Per function index: lean (see `analysis::Analysis::lean`).
    pub lean: &'a [bool],
    /// Per function index: what rewinding forms call instead of a function rewound directly
    /// (see `analysis::Analysis::direct_rewind`): a trampoline that looks for a rewind (see
    /// `module::trampoline_body`); or the function itself, which looks on entry.
    pub trampoline: &'a [u32],
    /// Per function index: its component of the call graph.
    pub component: &'a [u32],
}

pub struct Rewritten {
    /// The body at the function's own index: the running form, or the only form.
    pub body: Vec<u8>,
    /// The body of the function's rewind entry (see `ModuleFacts::rewind_entry`): the rewinding
    /// form, or a thunk that tail-calls the only form.
    pub rewind_body: Vec<u8>,
    /// Whether the function has a separate running form.
    pub two_forms: bool,
    pub resume_points: u32,
    pub polls: u32,
    /// Whether the function's locals now live in the locals memory (see `frame_memory`).
    pub locals_in_memory: bool,
    /// Bytes of the function's saved frame (0 if it cannot unwind).
    pub frame_size: u32,
    /// Loops of the running form that run without their poll when they will end soon.
    pub counted_loops: u32,
    /// Loops of the running form whose short body is copied so that it polls every few rounds.
    pub unrolled_loops: u32,
    /// Byte offsets in `body` of `if`s that are almost never taken, for the
    /// `metadata.code.branch_hint` section: the compiler then lays their code out of line.
    pub cold_ifs: Vec<u32>,
}

enum Node {
    Op(usize),
    Plain(Box<Construct>),
    Item(Item),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PollKind {
    /// On entry to a recursive function.
    Entry,
    /// At a loop's top.
    Loop,
    /// After a call that may recurse into a lean function (see `analysis::Analysis::lean`).
    AfterCall,
}

enum Item {
    Poll {
        rp: u32,
        /// Operator index it stands for (its loop, the operator after its call, or 0 for the
        /// function entry).
        pos: usize,
        /// The level's stack at the poll: a loop's parameters, or what a call left.
        stack: Vec<ValType>,
        kind: PollKind,
    },
    Call {
        op: usize,
        rp: u32,
        stack: Vec<ValType>,
        inputs: usize,
        outputs: Vec<ValType>,
    },
    Block {
        c: Box<Construct>,
        stack: Vec<ValType>,
        inputs: usize,
        outputs: Vec<ValType>,
        lo: u32,
        hi: u32,
    },
}

impl Item {
    /// The level's stack after the item: what was under its inputs, then its outputs.
    fn stack_after(&self) -> Vec<ValType> {
        match self {
            Item::Poll { stack, .. } => stack.clone(),
            Item::Call {
                stack,
                inputs,
                outputs,
                ..
            }
            | Item::Block {
                stack,
                inputs,
                outputs,
                ..
            } => {
                let mut s = stack[..stack.len() - inputs].to_vec();
                s.extend_from_slice(outputs);
                s
            }
        }
    }
    fn stack_before(&self) -> &[ValType] {
        match self {
            Item::Poll { stack, .. } => stack,
            Item::Call { stack, .. } | Item::Block { stack, .. } => stack,
        }
    }
}

struct Construct {
    open: usize,
    params: Vec<ValType>,
    bodies: Vec<Vec<Node>>,
}

/// A block being built while the operators stream past.
struct Open {
    open: usize,
    params: Vec<ValType>,
    results: Vec<ValType>,
    bodies: Vec<Vec<Node>>,
    current: Vec<Node>,
    base: usize,
    reachable: bool,
    entered_reachable: bool,
    first_rp: u32,
    stack: Vec<ValType>,
    inputs: usize,
}

const SYNTH: u32 = u32::MAX;

/// The flag word's address in the flag memory, a 64-bit memory (see `module::assemble`).
const FLAG_ADDRESS: Instruction<'static> = Instruction::I64Const(0);

/// Resume points with more live locals than this save through the shared path.
const INLINE_SAVE_LIMIT: usize = 24;

/// Numeric locals times resume points up to which a rewritten function gets a separate running
/// form. The largest functions are the slowest to compile, and a second form of them would
/// double that for the few calls they take; in Yosys the 737 functions above 20,000 (558 of
/// them with their locals in memory) hold a third of the rewritten code. The hot functions of
/// the programs measured lie below: Flite's filter loop at 4,512, its parameter generator
/// `mlpg` at 11,152 (at a bound of 10,000 it ran in its rewinding form, guards and plain polls
/// throughout: twice its plain instructions; the 496 Yosys functions between 10,000 and
/// 20,000 hold 6 % of its code).
pub const TWO_FORMS_UP_TO: usize = 20_000;

/// A running form whose resume points together store at most this many live locals stores
/// them all inline. The shared path stores every local, so a resume point that takes it keeps
/// even dead locals live up to it: in a hot loop that polls, that costs registers on every
/// iteration (Flite's inner filter loops ran at twice their plain time through it).
const INLINE_SAVE_BUDGET: usize = 4096;

pub fn rewrite(
    facts: &ModuleFacts<'_>,
    func_index: u32,
    entry_poll: bool,
    body: &FunctionBody<'_>,
    mut validator: FuncValidator<ValidatorResources>,
) -> Result<Rewritten> {
    let ty = facts.types[facts.func_types[func_index as usize] as usize]
        .as_ref()
        .ok_or_else(|| Error::Encode(format!("function {func_index} has no function type")))?;
    let mut locals: Vec<ValType> = ty.params().to_vec();
    let mut groups = Vec::new();
    let mut reader = body.get_locals_reader()?;
    for _ in 0..reader.get_count() {
        let pos = reader.original_position();
        let (count, t) = reader.read()?;
        validator.define_locals(pos, count, t)?;
        groups.push((count, t));
        for _ in 0..count {
            locals.push(t);
        }
    }
    for t in &locals {
        if let ValType::Ref(r) = t {
            if !r.is_nullable() {
                return Err(Error::Unsupported(format!(
                    "a non-nullable reference local in function {func_index}"
                )));
            }
            ref_class(*r).ok_or_else(|| {
                Error::Unsupported(format!("a local of type {r} in function {func_index}"))
            })?;
        }
    }

    let mut ops = Vec::new();
    let mut reader = body.get_operators_reader()?;
    let mut next_rp = 0u32;
    let mut polls = 0u32;
    // Where each resume point is, by operator index.
    let mut points: Vec<usize> = Vec::new();
    let mut stack: Vec<Open> = vec![Open {
        open: usize::MAX,
        params: Vec::new(),
        results: ty.results().to_vec(),
        bodies: Vec::new(),
        current: Vec::new(),
        base: 0,
        reachable: true,
        entered_reachable: true,
        first_rp: 0,
        stack: Vec::new(),
        inputs: 0,
    }];
    if entry_poll {
        stack[0].current.push(Node::Item(Item::Poll {
            rp: next_rp,
            pos: ops.len(),
            stack: Vec::new(),
            kind: PollKind::Entry,
        }));
        next_rp += 1;
        polls += 1;
        points.push(0);
    }
    let mut root: Option<Vec<Node>> = None;
    // A tail call to a function that may unwind becomes a call and a return: the unwinding
    // callee needs this frame below its own to be rewound into (a tail call would leave the
    // caller's caller expecting this function's frame on top).
    let mut pending: Option<Operator<'_>> = None;
    let mut offset = 0;
    // The operators as read (a loop looks ahead into its body), and the calls that take over
    // their loop's poll (see `call_every_iteration`).
    let mut raw = Vec::new();
    let mut positions = Vec::new();
    while !reader.eof() {
        positions.push(reader.original_position());
        raw.push(reader.read()?);
    }
    let mut next_raw = 0;
    let mut raw_index = 0;
    let mut polls_after: HashSet<usize> = HashSet::new();
    while pending.is_some() || next_raw < raw.len() {
        let op = match pending.take() {
            Some(op) => op,
            None => {
                raw_index = next_raw;
                offset = positions[next_raw];
                // Cheap to clone: operators borrow the body's bytes.
                let op = raw[next_raw].clone();
                next_raw += 1;
                match untail(facts, &op) {
                    Some(call) => {
                        pending = Some(Operator::Return);
                        call
                    }
                    None => op,
                }
            }
        };
        let index = ops.len();
        let top = stack
            .last_mut()
            .ok_or_else(|| Error::Encode("unbalanced blocks".into()))?;
        let reachable = top.reachable;
        let level = |v: &FuncValidator<ValidatorResources>, base: usize| level_types(v, base);
        match &op {
            Operator::Block { blockty }
            | Operator::Loop { blockty }
            | Operator::If { blockty }
            | Operator::TryTable {
                try_table: wasmparser::TryTable { ty: blockty, .. },
            } => {
                let (params, results) = block_sig(facts, *blockty)?;
                let is_if = matches!(op, Operator::If { .. });
                let inputs = params.len() + usize::from(is_if);
                let (level_stack, base) = if reachable {
                    let s = level(&validator, top.base)?;
                    let height = validator.operand_stack_height() as usize;
                    (s, height - inputs)
                } else {
                    (Vec::new(), 0)
                };
                let mut open = Open {
                    open: index,
                    params,
                    results,
                    bodies: Vec::new(),
                    current: Vec::new(),
                    base,
                    reachable,
                    entered_reachable: reachable,
                    first_rp: next_rp,
                    stack: level_stack,
                    inputs,
                };
                let call_instead = match op {
                    Operator::Loop { .. } if reachable => {
                        call_every_iteration(facts, &raw, raw_index)
                    }
                    _ => None,
                };
                if let Some(call) = call_instead {
                    polls_after.insert(call);
                } else if reachable && matches!(op, Operator::Loop { .. }) {
                    let params = open.params.clone();
                    open.current.push(Node::Item(Item::Poll {
                        rp: next_rp,
                        pos: ops.len(),
                        stack: params,
                        kind: PollKind::Loop,
                    }));
                    next_rp += 1;
                    polls += 1;
                    points.push(index);
                }
                stack.push(open);
            }
            Operator::Else => {
                let top = stack
                    .last_mut()
                    .ok_or_else(|| Error::Encode("else outside if".into()))?;
                let then = std::mem::take(&mut top.current);
                top.bodies.push(then);
                top.reachable = top.entered_reachable;
            }
            Operator::End => {
                let mut done = stack
                    .pop()
                    .ok_or_else(|| Error::Encode("unbalanced end".into()))?;
                let body = std::mem::take(&mut done.current);
                done.bodies.push(body);
                match stack.last_mut() {
                    None => {
                        let mut bodies = done.bodies;
                        root = bodies.pop();
                    }
                    Some(parent) => {
                        let c = Box::new(Construct {
                            open: done.open,
                            params: done.params,
                            bodies: done.bodies,
                        });
                        if done.entered_reachable && next_rp > done.first_rp {
                            parent.current.push(Node::Item(Item::Block {
                                c,
                                stack: done.stack,
                                inputs: done.inputs,
                                outputs: done.results,
                                lo: done.first_rp,
                                hi: next_rp - 1,
                            }));
                        } else {
                            parent.current.push(Node::Plain(c));
                        }
                    }
                }
            }
            _ => {
                let call = if reachable {
                    call_shape(facts, &op)
                } else {
                    None
                };
                let top = stack
                    .last_mut()
                    .ok_or_else(|| Error::Encode("unbalanced blocks".into()))?;
                match call {
                    Some((inputs, outputs)) => {
                        let s = level(&validator, top.base)?;
                        let mut after = s[..s.len() - inputs].to_vec();
                        after.extend_from_slice(&outputs);
                        top.current.push(Node::Item(Item::Call {
                            op: index,
                            rp: next_rp,
                            stack: s,
                            inputs,
                            outputs,
                        }));
                        next_rp += 1;
                        points.push(index);
                        let takes_loop_poll = pending.is_none() && polls_after.contains(&raw_index);
                        if takes_loop_poll || recurses_into_lean(facts, func_index, &op) {
                            top.current.push(Node::Item(Item::Poll {
                                rp: next_rp,
                                pos: index + 1,
                                stack: after,
                                kind: PollKind::AfterCall,
                            }));
                            next_rp += 1;
                            polls += 1;
                            points.push(index + 1);
                        }
                    }
                    None => top.current.push(Node::Op(index)),
                }
                if ends_reachability(&op) {
                    top.reachable = false;
                }
            }
        }
        validator.op(offset, &op)?;
        ops.push(op);
    }
    let root = root.ok_or_else(|| Error::Encode("function body has no end".into()))?;

    let live = liveness(&ops, locals.len());
    let mut slow = Emitter::new(facts, &ops, &locals, &live, Form::Rewinding);
    slow.function(func_index, ty.params().len(), ty.results(), &root)?;
    let mut frame_size = slow.frame_size();
    let mut added = std::mem::take(&mut slow.new_locals);
    let mut code = std::mem::take(&mut slow.code);
    let all: Vec<ValType> = locals.iter().chain(&added).copied().collect();
    let numeric = all.iter().filter(|t| !matches!(t, ValType::Ref(_))).count();
    let size = numeric.saturating_mul(next_rp as usize);
    let in_memory = ty.results().len() <= 1 && size > facts.locals_in_memory_above;
    if in_memory || size > facts.two_forms_up_to {
        // One form, which runs and rewinds; the rewind entry is a thunk to it.
        if in_memory {
            // Every resume point saves through the shared path: inline saves would multiply
            // the code of exactly the functions that are hardest to compile.
            let mut one = Emitter::new(facts, &ops, &locals, &live, Form::Rewinding);
            one.inline_limit = 0;
            one.function(func_index, ty.params().len(), ty.results(), &root)?;
            frame_size = one.frame_size();
            added = std::mem::take(&mut one.new_locals);
            let all: Vec<ValType> = locals.iter().chain(&added).copied().collect();
            let (more, moved) = frame_memory::move_locals(
                facts.locals_memory,
                &all,
                ty.params().len(),
                ty.results(),
                std::mem::take(&mut one.code),
            )?;
            added.extend(more);
            code = moved;
        }
        return Ok(Rewritten {
            body: encode(&groups, &added, &code)?,
            rewind_body: thunk(ty.params().len(), func_index),
            two_forms: false,
            resume_points: next_rp,
            polls,
            locals_in_memory: in_memory,
            frame_size,
            counted_loops: 0,
            unrolled_loops: 0,
            cold_ifs: Vec::new(),
        });
    }
    let mut fast = Emitter::new(facts, &ops, &locals, &live, Form::Running);
    fast.entry_poll = entry_poll;
    let stores: usize = points.iter().map(|&p| live.count(p)).sum();
    if stores <= INLINE_SAVE_BUDGET {
        fast.inline_limit = usize::MAX;
    }
    fast.function(func_index, ty.params().len(), ty.results(), &root)?;
    // Both forms write and read the same frames: a frame saved by one is rewound by the other.
    if fast.offsets != slow.offsets || fast.frame_bytes != slow.frame_bytes {
        return Err(Error::Encode(format!(
            "the two forms of function {func_index} lay out their frames differently"
        )));
    }
    let (body, cold_ifs) = encode_marked(&groups, &fast.new_locals, &fast.code, &fast.cold)?;
    Ok(Rewritten {
        body,
        rewind_body: encode(&groups, &added, &code)?,
        two_forms: true,
        resume_points: next_rp,
        polls,
        locals_in_memory: false,
        frame_size,
        counted_loops: fast.counted_loops,
        unrolled_loops: fast.unrolled_loops,
        cold_ifs,
    })
}

/// The function's body, and the byte offsets (from the body's start, its locals) of the
/// instructions at positions `marks` of `code`.
fn encode_marked(
    groups: &[(u32, ValType)],
    added: &[ValType],
    code: &[Instruction<'_>],
    marks: &[usize],
) -> Result<(Vec<u8>, Vec<u32>)> {
    let mut new_groups: Vec<(u32, wasm_encoder::ValType)> = Vec::new();
    for &(count, t) in groups {
        new_groups.push((count, enc_ty(t)?));
    }
    for t in added {
        let t = enc_ty(*t)?;
        match new_groups.last_mut() {
            Some((n, last)) if *last == t => *n += 1,
            _ => new_groups.push((1, t)),
        }
    }
    let mut f = Function::new(new_groups);
    let mut sorted = marks.to_vec();
    sorted.sort_unstable();
    let mut next = sorted.iter().peekable();
    let mut offsets = Vec::with_capacity(marks.len());
    for (k, i) in code.iter().enumerate() {
        while next.next_if(|&&m| m == k).is_some() {
            offsets.push(f.byte_len() as u32);
        }
        f.instruction(i);
    }
    offsets.dedup();
    Ok((f.into_raw_body(), offsets))
}

fn encode(
    groups: &[(u32, ValType)],
    added: &[ValType],
    code: &[Instruction<'_>],
) -> Result<Vec<u8>> {
    Ok(encode_marked(groups, added, code, &[])?.0)
}

/// For the loop opening at `ops[open]`: a call that may unwind, at the loop body's top level,
/// that every iteration passes before it can go round (no branch back to the loop comes
/// before it). A poll after that call stands for the loop's poll, and shares its load with
/// the state check after the call: list walks that call `strcmp` per element pay one check
/// per element instead of two.
fn call_every_iteration(
    facts: &ModuleFacts<'_>,
    ops: &[Operator<'_>],
    open: usize,
) -> Option<usize> {
    let body = &ops[open + 1..];
    let (call, _, _) = counted::nested(body)
        .take_while(|(_, depth, op)| !(*depth == 0 && matches!(op, Operator::End)))
        .find(|(_, depth, op)| *depth == 0 && call_shape(facts, op).is_some())?;
    (!counted::branches_to_top(&body[..call])).then_some(open + 1 + call)
}

/// A direct call from `caller` to a lean function of its own component: the call may recurse,
/// and the callee does not poll on entry, so the caller polls after it returns.
fn recurses_into_lean(facts: &ModuleFacts<'_>, caller: u32, op: &Operator<'_>) -> bool {
    let Operator::Call { function_index } = op else {
        return false;
    };
    let f = *function_index as usize;
    facts.lean.get(f).copied().unwrap_or(false)
        && facts.component.get(f) == facts.component.get(caller as usize)
}

/// The rewind entry of a function with one form: passes its parameters on by tail call.
fn thunk(params: usize, func_index: u32) -> Vec<u8> {
    let mut f = Function::new([]);
    for k in 0..params {
        f.instruction(&Instruction::LocalGet(k as u32));
    }
    f.instruction(&Instruction::ReturnCall(func_index));
    f.instruction(&Instruction::End);
    f.into_raw_body()
}

fn level_types(v: &FuncValidator<ValidatorResources>, base: usize) -> Result<Vec<ValType>> {
    let height = v.operand_stack_height() as usize;
    let mut out = Vec::with_capacity(height.saturating_sub(base));
    for k in base..height {
        match v.get_operand_type(height - 1 - k) {
            Some(Some(t)) => out.push(t),
            _ => {
                return Err(Error::Encode(
                    "operand of unknown type in reachable code".into(),
                ))
            }
        }
    }
    Ok(out)
}

fn block_sig(
    facts: &ModuleFacts<'_>,
    bt: wasmparser::BlockType,
) -> Result<(Vec<ValType>, Vec<ValType>)> {
    Ok(match bt {
        wasmparser::BlockType::Empty => (Vec::new(), Vec::new()),
        wasmparser::BlockType::Type(t) => (Vec::new(), vec![t]),
        wasmparser::BlockType::FuncType(i) => {
            let ft = facts
                .types
                .get(i as usize)
                .and_then(|t| t.as_ref())
                .ok_or_else(|| Error::Encode(format!("block type {i} is not a function type")))?;
            (ft.params().to_vec(), ft.results().to_vec())
        }
    })
}

/// The plain call a tail call becomes when its callee may unwind.
fn untail<'a>(facts: &ModuleFacts<'_>, op: &Operator<'a>) -> Option<Operator<'a>> {
    let call = match *op {
        Operator::ReturnCall { function_index } => Operator::Call { function_index },
        Operator::ReturnCallIndirect {
            type_index,
            table_index,
        } => Operator::CallIndirect {
            type_index,
            table_index,
        },
        Operator::ReturnCallRef { type_index } => Operator::CallRef { type_index },
        _ => return None,
    };
    call_shape(facts, &call).map(|_| call)
}

/// For a call that may unwind: (number of operands it pops, types it pushes).
fn call_shape(facts: &ModuleFacts<'_>, op: &Operator<'_>) -> Option<(usize, Vec<ValType>)> {
    let (type_index, extra) = match op {
        Operator::Call { function_index } => {
            if !*facts.unwinds.get(*function_index as usize)? {
                return None;
            }
            (*facts.func_types.get(*function_index as usize)?, 0)
        }
        Operator::CallIndirect { type_index, .. } | Operator::CallRef { type_index } => {
            let sig = (*facts.type_sig.get(*type_index as usize)?)?;
            if !*facts.sig_unwinds.get(sig as usize)? {
                return None;
            }
            (*type_index, 1)
        }
        _ => return None,
    };
    let ft = facts.types.get(type_index as usize)?.as_ref()?;
    Some((ft.params().len() + extra, ft.results().to_vec()))
}

fn ends_reachability(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::Br { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Unreachable
            | Operator::Throw { .. }
            | Operator::ThrowRef
            | Operator::Rethrow { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. }
    )
}

/// Which of Tern's reference tables holds a local of this type.
fn ref_class(r: RefType) -> Option<usize> {
    match r.heap_type() {
        HeapType::Abstract { shared: false, ty } => match ty {
            AbstractHeapType::Func => Some(0),
            AbstractHeapType::Extern => Some(1),
            AbstractHeapType::Exn => Some(2),
            _ => None,
        },
        _ => None,
    }
}

fn enc_ty(t: ValType) -> Result<wasm_encoder::ValType> {
    RoundtripReencoder
        .val_type(t)
        .map_err(|e| Error::Encode(e.to_string()))
}

/// A spill slot: nesting depth, whether it stages block parameters, stack position, type.
type SlotKey = (u32, bool, usize, ValType);

/// Which of a function's two forms is being emitted. Both save the same frames at the same
/// resume points; only the rewinding form can rebuild a frame and jump back into the body,
/// which costs a guard on every segment and a skip block around every item. The running form,
/// which the program calls, has neither: on entry during a rewind it tail-calls the rewinding
/// form, which stays in use until its frame returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Running,
    Rewinding,
}

struct Emitter<'a> {
    form: Form,
    /// Where each original local is live.
    live: &'a Liveness,
    /// Per original local: where it is spent (see `liveness::spent_after`).
    spent_after: Vec<usize>,
    /// Frame offset of every local (the frame pointer has none).
    offsets: Vec<u32>,
    frame_bytes: u32,
    /// Spill slots holding operand stacks of the blocks around the current point.
    live_slots: Vec<u32>,
    save_all_label: usize,
    /// Resume points with more live locals than this store them through the shared path.
    inline_limit: usize,
    /// Whether resume point 0 is a poll on entry (the function lies on a call cycle).
    entry_poll: bool,
    /// The function's index and parameter count, for passing a rewind on.
    entry: (u32, usize),
    /// Loops given a poll-free copy (see `counted`).
    counted_loops: u32,
    /// Loops (by operator index) whose poll loads the flag only now and then (see `counted`).
    strides: HashMap<usize, counted::Stride>,
    /// The loop (by operator index) whose body is about to be emitted unrolled (see `counted`).
    /// Its way back's operator index, and the exit block's place among the labels.
    unrolling: Option<(usize, usize, Option<usize>)>,
    /// Loops unrolled (see `counted`).
    unrolled_loops: u32,
    /// Positions in `code` of the `if`s that are almost never taken (a capture or a rewind in
    /// progress), hinted as such to the compiler (see `Rewritten::cold_ifs`).
    cold: Vec<usize>,
    facts: &'a ModuleFacts<'a>,
    ops: &'a [Operator<'a>],
    locals: &'a [ValType],
    new_locals: Vec<ValType>,
    slots: HashMap<SlotKey, u32>,
    rp: u32,
    fp: u32,
    code: Vec<Instruction<'a>>,
    /// Labels as emitted: an original label's id, or SYNTH for one Tern added.
    labels: Vec<u32>,
    /// Labels of the original code, innermost last.
    orig: Vec<u32>,
    next_label: u32,
}

fn arg(offset: u64, memory_index: u32) -> MemArg {
    MemArg {
        offset,
        align: 0,
        memory_index,
    }
}

impl<'a> Emitter<'a> {
    fn new(
        facts: &'a ModuleFacts<'a>,
        ops: &'a [Operator<'a>],
        locals: &'a [ValType],
        live: &'a Liveness,
        form: Form,
    ) -> Self {
        let base = locals.len() as u32;
        let mut offsets = Vec::with_capacity(locals.len() + 2);
        let mut frame_bytes = 0;
        for t in locals.iter().chain([ValType::I32].iter()) {
            offsets.push(frame_bytes);
            frame_bytes += scalar_size(*t);
        }
        offsets.push(u32::MAX); // the frame pointer is not saved
        Emitter {
            form,
            live,
            spent_after: spent_after(ops, locals.len()),
            offsets,
            frame_bytes,
            live_slots: Vec::new(),
            save_all_label: 0,
            inline_limit: INLINE_SAVE_LIMIT,
            entry_poll: false,
            entry: (0, 0),
            counted_loops: 0,
            strides: HashMap::new(),
            unrolling: None,
            unrolled_loops: 0,
            cold: Vec::new(),
            facts,
            ops,
            locals,
            new_locals: vec![ValType::I32, ValType::I32],
            slots: HashMap::new(),
            rp: base,
            fp: base + 1,
            code: Vec::new(),
            labels: Vec::new(),
            orig: Vec::new(),
            next_label: 0,
        }
    }

    /// Bytes of a saved frame: every local's slot, then the trailer.
    fn frame_size(&self) -> u32 {
        self.frame_bytes + crate::FRAME_TRAILER
    }

    fn slot(&mut self, depth: u32, staging: bool, pos: usize, t: ValType) -> u32 {
        let t = match t {
            ValType::Ref(r) => ValType::Ref(r.nullable()),
            t => t,
        };
        let next = self.locals.len() as u32 + self.new_locals.len() as u32;
        *self
            .slots
            .entry((depth, staging, pos, t))
            .or_insert_with(|| {
                self.new_locals.push(t);
                self.offsets.push(self.frame_bytes);
                self.frame_bytes += scalar_size(t);
                next
            })
    }

    /// An `if` that is almost never taken.
    fn push_cold_if(&mut self) {
        self.cold.push(self.code.len());
        self.push_synth(Instruction::If(BlockType::Empty));
    }

    fn push_synth(&mut self, i: Instruction<'a>) {
        self.code.push(i);
        self.labels.push(SYNTH);
    }

    fn end_synth(&mut self) {
        self.code.push(Instruction::End);
        self.labels.pop();
    }

    fn depth_of_label(&self, position: usize) -> u32 {
        (self.labels.len() - 1 - position) as u32
    }

    fn map_depth(&self, d: u32) -> Result<u32> {
        let target = *self
            .orig
            .len()
            .checked_sub(1 + d as usize)
            .and_then(|i| self.orig.get(i))
            .ok_or_else(|| Error::Encode(format!("branch depth {d} out of range")))?;
        let pos = self
            .labels
            .iter()
            .rposition(|&l| l == target)
            .ok_or_else(|| Error::Encode("branch target vanished".into()))?;
        Ok(self.depth_of_label(pos))
    }

    fn spill(&mut self, depth: u32, types: &[ValType], from: usize) {
        for (k, t) in types.iter().enumerate().rev() {
            let l = self.slot(depth, false, from + k, *t);
            self.code.push(Instruction::LocalSet(l));
        }
    }

    fn reload(&mut self, depth: u32, staging: bool, types: &[ValType], from: usize) {
        for (k, t) in types.iter().enumerate() {
            let l = self.slot(depth, staging, from + k, *t);
            self.code.push(Instruction::LocalGet(l));
            if let ValType::Ref(r) = t {
                if !r.is_nullable() {
                    self.code.push(Instruction::RefAsNonNull);
                }
            }
        }
    }

    /// Running form, during a rewind: continue in the rewinding form.
    fn pass_rewind_on(&mut self, func_index: u32, params: usize) {
        for k in 0..params {
            self.code.push(Instruction::LocalGet(k as u32));
        }
        self.code.push(Instruction::ReturnCall(
            self.facts.rewind_entry[func_index as usize],
        ));
    }

    fn function(
        &mut self,
        func_index: u32,
        params: usize,
        results: &[ValType],
        root: &[Node],
    ) -> Result<()> {
        self.entry = (func_index, params);
        let func_label = self.next_label;
        self.next_label += 1;
        self.labels.push(func_label);
        self.orig.push(func_label);
        // `block $unwind`: every resume point branches out of it to finish the frame; one with
        // too many live locals to store inline leaves through `block $save_all` instead.
        self.labels.push(SYNTH);
        let unwind_label = self.labels.len() - 1;
        self.labels.push(SYNTH);
        self.save_all_label = self.labels.len() - 1;
        self.body(root, 0, &[], unwind_label)?;
        self.code.push(Instruction::Return);
        self.code.push(Instruction::End);
        self.labels.pop();
        self.code.push(Instruction::GlobalGet(self.facts.sp_global));
        self.code.push(Instruction::LocalSet(self.fp));
        for (l, t) in self.saved_locals() {
            if !matches!(t, ValType::Ref(_)) {
                let off = self.offsets[l as usize];
                self.code.push(Instruction::LocalGet(self.fp));
                self.code.push(Instruction::LocalGet(l));
                self.code
                    .push(store(t, arg(off as u64, self.facts.frames_memory))?);
            }
        }
        self.code.push(Instruction::End);
        self.labels.pop();
        let body = std::mem::take(&mut self.code);
        let body_cold = std::mem::take(&mut self.cold);
        // The frame layout covers the spill slots, known only now that the body is emitted; the
        // prologue that rebuilds the frame therefore goes in front afterwards.
        let slots: Vec<(u32, ValType, u32)> = self
            .saved_locals()
            .into_iter()
            .map(|(l, t)| (l, t, self.offsets[l as usize]))
            .collect();
        let size = self.frame_size();
        if self.form == Form::Running
            && !self.entry_poll
            && self.facts.trampoline[func_index as usize] == func_index
        {
            // A rewind passes through here on its way down (its callers' rewinding forms call
            // this index) and continues in the rewinding form. One load and one branch per
            // call: the price of the running form's freedom from guards. (A function that polls
            // on entry checks inside its poll instead: the host raises the flag while
            // rewinding, so the poll's one load covers both.)
            self.code
                .push(Instruction::GlobalGet(self.facts.state_global));
            self.code.push(Instruction::I32Const(STATE_REWINDING));
            self.code.push(Instruction::I32Eq);
            self.cold.push(self.code.len());
            self.code.push(Instruction::If(BlockType::Empty));
            self.pass_rewind_on(func_index, params);
            self.code.push(Instruction::End);
        }
        self.code.push(Instruction::Block(BlockType::Empty));
        self.code.push(Instruction::Block(BlockType::Empty));
        if self.form == Form::Rewinding {
            self.code
                .push(Instruction::GlobalGet(self.facts.state_global));
            self.code.push(Instruction::I32Const(STATE_REWINDING));
            self.code.push(Instruction::I32Eq);
            self.code.push(Instruction::If(BlockType::Empty));
            self.restore_frame(&slots, size)?;
            self.code.push(Instruction::End);
        }
        let shift = self.code.len();
        self.cold.extend(body_cold.into_iter().map(|at| at + shift));
        self.code.extend(body);
        self.save_frame(func_index, &slots, size)?;
        for t in results {
            self.code.push(dummy(*t)?);
        }
        self.code.push(Instruction::End);
        Ok(())
    }

    fn body(
        &mut self,
        nodes: &[Node],
        depth: u32,
        params: &[ValType],
        unwind: usize,
    ) -> Result<()> {
        let items: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n, Node::Item(_)))
            .map(|(i, _)| i)
            .collect();
        let Some(&first) = items.first() else {
            for n in nodes {
                self.plain(n)?;
            }
            return Ok(());
        };
        for (k, t) in params.iter().enumerate().rev() {
            let l = self.slot(depth, true, k, *t);
            self.code.push(Instruction::LocalSet(l));
        }
        let before = item_of(&nodes[first])?.stack_before().to_vec();
        // An empty segment needs no guard: it would cost a load and a branch for nothing, on
        // every iteration when it opens a loop body.
        if !(first == 0 && params.is_empty() && before.is_empty()) {
            let guarded = self.guard_open();
            self.reload(depth, true, params, 0);
            for n in &nodes[..first] {
                self.plain(n)?;
            }
            self.spill(depth, &before, 0);
            self.guard_close(guarded);
        }
        let mut merged = false;
        for (j, &ix) in items.iter().enumerate() {
            let item = item_of(&nodes[ix])?;
            if merged {
                // This poll went out with the call before it.
                merged = false;
            } else {
                let then_poll = match (self.form, item, items.get(j + 1)) {
                    (Form::Running, Item::Call { .. }, Some(&next))
                        if next == ix + 1 && !self.results_wait(item) =>
                    {
                        match item_of(&nodes[next])? {
                            p @ Item::Poll {
                                kind: PollKind::AfterCall,
                                ..
                            } => Some(p),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                merged = then_poll.is_some();
                self.item(item, then_poll, depth, unwind)?;
            }
            let after = item.stack_after();
            match items.get(j + 1) {
                Some(&next) => {
                    let before = item_of(&nodes[next])?.stack_before().to_vec();
                    // Nothing between two items, and the stack already in the right slots.
                    if next == ix + 1 && before == after {
                        continue;
                    }
                    let guarded = self.guard_open();
                    self.reload(depth, false, &after, 0);
                    for n in &nodes[ix + 1..next] {
                        self.plain(n)?;
                    }
                    self.spill(depth, &before, 0);
                    self.guard_close(guarded);
                }
                None => {
                    self.reload(depth, false, &after, 0);
                    let rest = &nodes[ix + 1..];
                    if let Some((cut, exit)) = self.unrolled_cut(item, rest) {
                        self.unrolled_copies(&rest[..cut], exit)?;
                    }
                    for n in rest {
                        self.plain(n)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `if (state == running)`: code that a rewind skips (the running form has no rewind).
    fn guard_open(&mut self) -> bool {
        if self.form == Form::Running {
            return false;
        }
        self.code
            .push(Instruction::GlobalGet(self.facts.state_global));
        self.code.push(Instruction::I32Eqz);
        self.push_synth(Instruction::If(BlockType::Empty));
        true
    }

    fn guard_close(&mut self, guarded: bool) {
        if guarded {
            self.end_synth();
        }
    }

    /// `block $skip` around an item, which a rewind leaves unless its target lies inside.
    fn skip_open(&mut self, lo: u32, hi: u32) -> bool {
        if self.form == Form::Running {
            return false;
        }
        self.push_synth(Instruction::Block(BlockType::Empty));
        self.skip_unless_target(lo, hi);
        true
    }

    /// Inside a `block $skip`: leave it when rewinding to a resume point outside [lo, hi].
    fn skip_unless_target(&mut self, lo: u32, hi: u32) {
        self.code
            .push(Instruction::GlobalGet(self.facts.state_global));
        self.push_synth(Instruction::If(BlockType::Empty));
        self.code.push(Instruction::LocalGet(self.rp));
        self.code.push(Instruction::I32Const(lo as i32));
        self.code.push(Instruction::I32Sub);
        self.code.push(Instruction::I32Const((hi - lo) as i32));
        self.code.push(Instruction::I32GtU);
        self.code.push(Instruction::BrIf(1));
        self.end_synth();
    }

    /// Unwind from resume point `rp` (at operator `pos`): store the locals live there at the
    /// frame stack's top, then leave for the shared tail. Saving only live locals matters for
    /// speed, not size: a local the save reads is live until the save as far as the compiler
    /// knows, and keeping every local live across a whole function costs registers everywhere.
    fn start_unwind(&mut self, rp: u32, pos: usize, unwind: usize) -> Result<()> {
        let frames = self.facts.frames_memory;
        self.code.push(Instruction::I32Const(rp as i32));
        self.code.push(Instruction::LocalSet(self.rp));
        let mut live: Vec<u32> = (0..self.locals.len())
            .filter(|&i| self.live.is_live(i, pos))
            .map(|i| i as u32)
            .collect();
        live.extend(self.live_slots.iter().copied());
        // Inline saves cost code per resume point; in huge functions with many live locals
        // they would multiply the size, so those resume points share one save-everything path.
        if live.len() > self.inline_limit {
            self.code
                .push(Instruction::Br(self.depth_of_label(self.save_all_label)));
            return Ok(());
        }
        self.code.push(Instruction::GlobalGet(self.facts.sp_global));
        self.code.push(Instruction::LocalSet(self.fp));
        live.push(self.rp);
        for l in live {
            let t = self.local_type(l);
            if matches!(t, ValType::Ref(_)) {
                continue; // references are saved in the shared tail
            }
            let off = self.offsets[l as usize];
            self.code.push(Instruction::LocalGet(self.fp));
            self.code.push(Instruction::LocalGet(l));
            self.code.push(store(t, arg(off as u64, frames))?);
        }
        // A dead reference (an exception already rethrown or handled) must not stop the capture:
        // the host refuses frames holding live references, so clear the dead ones.
        for (i, t) in self.locals.iter().enumerate() {
            if let ValType::Ref(r) = t {
                if pos > self.spent_after[i] {
                    if let Some(class) = ref_class(*r) {
                        self.code.push(Instruction::RefNull(null_heap(class)));
                        self.code.push(Instruction::LocalSet(i as u32));
                    }
                }
            }
        }
        self.code.push(Instruction::Br(self.depth_of_label(unwind)));
        Ok(())
    }

    fn local_type(&self, l: u32) -> ValType {
        let n = self.locals.len();
        match (l as usize).checked_sub(n) {
            None => self.locals[l as usize],
            Some(k) => self.new_locals[k],
        }
    }

    /// Spill slots `[0, n)` of `depth` hold the level's stack while an item runs: what lies
    /// under it, and those of its inputs that a rewind needs again (an `if` condition decides
    /// where the rewind goes; a blocking import is called again with its arguments).
    fn hold_slots(&mut self, depth: u32, types: &[ValType]) -> usize {
        let mark = self.live_slots.len();
        for (k, t) in types.iter().enumerate() {
            let l = self.slot(depth, false, k, *t);
            self.live_slots.push(l);
        }
        mark
    }

    /// Whether a call's results stay on the operand stack until its unwind check, spilled only
    /// after it: results go to the slots of the call's first inputs, and a rewind calls a
    /// blocking import again with all its arguments (an indirect call needs its table index),
    /// so an unwind must save the inputs, not the results over them. (Spilled first, the
    /// result of an interrupted `sock_accept(3, ..)`, 0, became its descriptor: resumed, it
    /// accepted on stdin.)
    fn results_wait(&self, item: &Item) -> bool {
        let Item::Call {
            op,
            inputs,
            outputs,
            ..
        } = item
        else {
            return false;
        };
        if outputs.is_empty() || *inputs == 0 {
            return false;
        }
        match self.ops[*op] {
            Operator::Call { function_index: f } => {
                let f = f as usize;
                self.facts.rewind_entry.get(f) == Some(&(f as u32))
                    && self.facts.unwinds.get(f).copied().unwrap_or(false)
            }
            // The index is the last input: below the results only if there are fewer.
            _ => outputs.len() >= *inputs,
        }
    }

    /// Emit one item. `then_poll`, in the running form, is the poll right after a call item:
    /// one load of the flag serves both (see `PollKind::AfterCall`).
    fn item(
        &mut self,
        item: &Item,
        then_poll: Option<&Item>,
        depth: u32,
        unwind: usize,
    ) -> Result<()> {
        match item {
            Item::Poll { rp, pos, kind, .. } => {
                let held = self.hold_slots(depth, item.stack_before());
                self.poll(*rp, *pos, *kind, unwind)?;
                self.live_slots.truncate(held);
            }
            Item::Call {
                op,
                rp,
                stack,
                inputs,
                outputs,
            } => {
                let under = stack.len() - inputs;
                // A rewind reaches a function's rewinding form, which takes its frame and
                // ignores its arguments; only a blocking import, called again, needs them, and
                // an indirect call its index. Not saving them keeps them from living across
                // the call.
                let callee = match self.ops[*op] {
                    Operator::Call { function_index } => Some(function_index),
                    _ => None,
                };
                let reaches_import =
                    callee.is_none_or(|f| self.facts.rewind_entry[f as usize] == f);
                let kept = if reaches_import { stack.len() } else { under };
                let direct = callee.filter(|&f| self.facts.trampoline[f as usize] != f);
                let skip = self.skip_open(*rp, *rp);
                match (self.form, direct) {
                    (Form::Rewinding, Some(f)) => {
                        // The callee does not look for a rewind on entry: its trampoline does,
                        // and enters its rewind entry for a rewind to this call. The call
                        // stays one call, so the (often largest) rewinding forms do not grow.
                        self.reload(depth, false, &stack[under..], under);
                        self.code
                            .push(Instruction::Call(self.facts.trampoline[f as usize]));
                    }
                    _ => self.call(*op, depth, &stack[under..], under)?,
                }
                let wait = self.results_wait(item);
                if !wait {
                    self.spill(depth, outputs, under);
                }
                match then_poll {
                    Some(Item::Poll {
                        rp: poll_rp,
                        pos,
                        stack: poll_stack,
                        ..
                    }) => {
                        // The flag is raised both while the callee unwinds and when a capture
                        // is asked for here; the state tells which.
                        self.code.push(FLAG_ADDRESS);
                        self.code
                            .push(Instruction::I32Load(arg(0, self.facts.flag_memory)));
                        self.push_cold_if();
                        self.code
                            .push(Instruction::GlobalGet(self.facts.state_global));
                        self.push_synth(Instruction::If(BlockType::Empty));
                        let held = self.hold_slots(depth, &stack[..kept]);
                        self.start_unwind(*rp, *op, unwind)?;
                        self.live_slots.truncate(held);
                        self.code.push(Instruction::Else);
                        self.code
                            .push(Instruction::I32Const(crate::STATE_UNWINDING));
                        self.code
                            .push(Instruction::GlobalSet(self.facts.state_global));
                        let held = self.hold_slots(depth, poll_stack);
                        self.start_unwind(*poll_rp, *pos, unwind)?;
                        self.live_slots.truncate(held);
                        self.end_synth();
                        self.end_synth();
                    }
                    _ => {
                        self.code
                            .push(Instruction::GlobalGet(self.facts.state_global));
                        self.push_cold_if();
                        let held = self.hold_slots(depth, &stack[..kept]);
                        self.start_unwind(*rp, *op, unwind)?;
                        self.live_slots.truncate(held);
                        self.end_synth();
                    }
                }
                if wait {
                    self.spill(depth, outputs, under);
                }
                self.guard_close(skip);
            }
            Item::Block {
                c,
                stack,
                inputs,
                outputs,
                lo,
                hi,
            } => {
                let skip = self.skip_open(*lo, *hi);
                let under = stack.len() - inputs;
                self.reload(depth, false, &stack[under..], under);
                let held = self.hold_slots(depth, stack);
                // A loop whose only resume point is its poll: it runs without the poll if it
                // will end soon, and its poll loads the flag only now and then.
                let plan = if self.leaf_loop(c) {
                    counted::plan(self.ops, c.open)
                } else {
                    counted::Plan::default()
                };
                if let Some(stride) = plan.stride {
                    self.strides.insert(c.open, stride);
                }
                // The copies' exits leave the loop through a block around it.
                let exit_block = plan.unroll.is_some_and(|u| u.conditional);
                if exit_block {
                    self.push_synth(Instruction::Block(BlockType::Empty));
                }
                self.unrolling = plan
                    .unroll
                    .map(|u| (c.open, u.back, exit_block.then(|| self.labels.len() - 1)));
                let check = plan.counted.and_then(|k| counted::fits(&k));
                match check {
                    Some(check) => self.counted_loop(c, check, depth, unwind)?,
                    None => self.construct(c, Some((depth + 1, unwind)))?,
                }
                if self.unrolling.take().is_some() {
                    return Err(Error::Encode(
                        "an unrolled loop's body was not found".into(),
                    ));
                }
                if exit_block {
                    self.end_synth();
                }
                self.live_slots.truncate(held);
                self.spill(depth, outputs, under);
                self.guard_close(skip);
            }
        }
        Ok(())
    }

    /// A call item's call, its inputs reloaded from the spill slots.
    fn call(&mut self, op: usize, depth: u32, inputs: &[ValType], under: usize) -> Result<()> {
        self.reload(depth, false, inputs, under);
        let plain = self.instruction(op)?;
        self.code.push(plain);
        Ok(())
    }

    /// A safe point with no call: unwind if the host asked for a capture; finish the rewind if
    /// this is where the capture happened.
    fn poll(&mut self, rp: u32, pos: usize, kind: PollKind, unwind: usize) -> Result<()> {
        let flag = self.facts.flag_memory;
        // A loop's poll may be strided; the others, which may stand at the same operator (a
        // body or a call followed by a loop), never are: a rewind must always find them.
        let entry = kind == PollKind::Entry;
        let stride = if kind == PollKind::Loop {
            self.strides.get(&pos).copied()
        } else {
            None
        };
        if let Some(s) = stride {
            self.code.push(Instruction::LocalGet(s.local));
            self.code.push(Instruction::I32Const(s.mask));
            self.code.push(Instruction::I32And);
            self.code.push(Instruction::I32Eqz);
            self.push_cold_if();
        }
        self.code.push(FLAG_ADDRESS);
        self.code.push(Instruction::I32Load(arg(0, flag)));
        self.push_cold_if();
        match self.form {
            Form::Running => {
                if entry {
                    self.code
                        .push(Instruction::GlobalGet(self.facts.state_global));
                    self.code.push(Instruction::I32Const(STATE_REWINDING));
                    self.code.push(Instruction::I32Eq);
                    self.push_cold_if();
                    let (func_index, params) = self.entry;
                    self.pass_rewind_on(func_index, params);
                    self.end_synth();
                }
                // Past the entry, a rewind continues in the rewinding form, so in the running
                // form a raised flag asks for a capture.
            }
            Form::Rewinding => {
                // Rewinding: finish the rewind if this is where the capture happened;
                // otherwise a capture is asked for.
                self.code
                    .push(Instruction::GlobalGet(self.facts.state_global));
                self.push_synth(Instruction::If(BlockType::Empty));
                self.code.push(Instruction::LocalGet(self.rp));
                self.code.push(Instruction::I32Const(rp as i32));
                self.code.push(Instruction::I32Eq);
                self.push_synth(Instruction::If(BlockType::Empty));
                self.code.push(Instruction::I32Const(0));
                self.code
                    .push(Instruction::GlobalSet(self.facts.state_global));
                self.code.push(FLAG_ADDRESS);
                self.code.push(FLAG_ADDRESS);
                self.code.push(Instruction::I32Load(arg(0, flag)));
                self.code
                    .push(Instruction::I32Const(!(crate::FLAG_REWIND as i32)));
                self.code.push(Instruction::I32And);
                self.code.push(Instruction::I32Store(arg(0, flag)));
                self.end_synth();
                self.code.push(Instruction::Else);
            }
        }
        self.code
            .push(Instruction::I32Const(crate::STATE_UNWINDING));
        self.code
            .push(Instruction::GlobalSet(self.facts.state_global));
        self.start_unwind(rp, pos, unwind)?;
        if self.form == Form::Rewinding {
            self.end_synth();
        }
        self.end_synth();
        if stride.is_some() {
            self.end_synth();
        }
        Ok(())
    }

    /// Emit a block-like construct. With `rewind`, its bodies are segmented (it contains resume
    /// points); without, it is copied as is.
    fn construct(&mut self, c: &Construct, rewind: Option<(u32, usize)>) -> Result<()> {
        self.open_construct(c)?;
        for (k, b) in c.bodies.iter().enumerate() {
            if k > 0 {
                self.code.push(Instruction::Else);
            }
            match rewind {
                Some((depth, unwind)) => self.body(b, depth, &c.params, unwind)?,
                None => {
                    for n in b {
                        self.plain(n)?;
                    }
                }
            }
        }
        self.close_construct();
        Ok(())
    }

    /// The construct's opening instruction, and its label.
    fn open_construct(&mut self, c: &Construct) -> Result<()> {
        let opener = self.instruction(c.open)?;
        self.code.push(opener);
        let id = self.next_label;
        self.next_label += 1;
        self.labels.push(id);
        self.orig.push(id);
        Ok(())
    }

    fn close_construct(&mut self) {
        self.code.push(Instruction::End);
        self.labels.pop();
        self.orig.pop();
    }

    /// Whether `c` is a loop of the running form whose only resume point is its own poll: the
    /// loops that `counted` may speed up.
    fn leaf_loop(&self, c: &Construct) -> bool {
        if self.form != Form::Running || !matches!(self.ops[c.open], Operator::Loop { .. }) {
            return false;
        }
        let Some(body) = c.bodies.first() else {
            return false;
        };
        let items = body.iter().filter(|n| matches!(n, Node::Item(_))).count();
        items == 1 && matches!(body.first(), Some(Node::Item(Item::Poll { .. })))
    }

    /// A counted loop twice: without its poll when `check` says it ends soon, else as it is.
    fn counted_loop(
        &mut self,
        c: &Construct,
        check: Vec<Instruction<'static>>,
        depth: u32,
        unwind: usize,
    ) -> Result<()> {
        let Operator::Loop { blockty } = self.ops[c.open] else {
            return Err(Error::Encode("a counted loop that is not a loop".into()));
        };
        let bt = RoundtripReencoder
            .block_type(blockty)
            .map_err(|e| Error::Encode(e.to_string()))?;
        self.push_synth(Instruction::Block(bt)); // $done
        self.push_synth(Instruction::Block(BlockType::Empty)); // $polled
        self.code.extend(check);
        self.code.push(Instruction::I32Eqz);
        self.code.push(Instruction::BrIf(0));
        self.open_construct(c)?;
        for n in &c.bodies[0] {
            if !matches!(n, Node::Item(Item::Poll { .. })) {
                self.plain(n)?;
            }
        }
        self.close_construct();
        self.code.push(Instruction::Br(1));
        self.end_synth();
        self.construct(c, Some((depth + 1, unwind)))?;
        self.end_synth();
        self.counted_loops += 1;
        Ok(())
    }

    /// Where the way back is in `rest`, the nodes after a loop's poll, when that loop is the one
    /// being unrolled (its body has no other item, so every node of `rest` is plain); and the
    /// exit block's place among the labels, for a conditional way back.
    fn unrolled_cut(&mut self, item: &Item, rest: &[Node]) -> Option<(usize, Option<usize>)> {
        let Item::Poll {
            pos,
            kind: PollKind::Loop,
            ..
        } = item
        else {
            return None;
        };
        let (open, back, exit) = self.unrolling?;
        if open != *pos {
            return None;
        }
        let cut = rest
            .iter()
            .position(|n| matches!(n, Node::Op(i) if *i == back))?;
        self.unrolling = None;
        Some((cut, exit))
    }

    /// All but the last of an unrolled loop's copies of `before`, the nodes before its way back
    /// (the loop's own body, emitted next, is the last). A conditional way back becomes a branch
    /// out of the loop when it would not have gone round.
    fn unrolled_copies(&mut self, before: &[Node], exit: Option<usize>) -> Result<()> {
        for _ in 1..counted::UNROLL {
            for n in before {
                self.plain(n)?;
            }
            if let Some(exit) = exit {
                self.code.push(Instruction::I32Eqz);
                self.code.push(Instruction::BrIf(self.depth_of_label(exit)));
            }
        }
        self.unrolled_loops += 1;
        Ok(())
    }

    fn plain(&mut self, n: &Node) -> Result<()> {
        match n {
            Node::Op(i) => {
                let i = self.instruction(*i)?;
                self.code.push(i);
            }
            Node::Plain(c) => self.construct(c, None)?,
            Node::Item(_) => {
                return Err(Error::Encode(
                    "resume point outside a segmented body".into(),
                ))
            }
        }
        Ok(())
    }

    /// Re-encode one original operator, renumbering its branch targets.
    fn instruction(&mut self, index: usize) -> Result<Instruction<'a>> {
        let op = self.ops[index].clone();
        let conv = |e: wasm_encoder::reencode::Error| Error::Encode(e.to_string());
        Ok(match op {
            Operator::Br { relative_depth } => Instruction::Br(self.map_depth(relative_depth)?),
            Operator::BrIf { relative_depth } => Instruction::BrIf(self.map_depth(relative_depth)?),
            Operator::BrOnNull { relative_depth } => {
                Instruction::BrOnNull(self.map_depth(relative_depth)?)
            }
            Operator::BrOnNonNull { relative_depth } => {
                Instruction::BrOnNonNull(self.map_depth(relative_depth)?)
            }
            Operator::BrTable { targets } => {
                let mut ls = Vec::with_capacity(targets.len() as usize);
                for t in targets.targets() {
                    ls.push(self.map_depth(t?)?);
                }
                Instruction::BrTable(ls.into(), self.map_depth(targets.default())?)
            }
            Operator::BrOnCast {
                relative_depth,
                from_ref_type,
                to_ref_type,
            } => Instruction::BrOnCast {
                relative_depth: self.map_depth(relative_depth)?,
                from_ref_type: RoundtripReencoder.ref_type(from_ref_type).map_err(conv)?,
                to_ref_type: RoundtripReencoder.ref_type(to_ref_type).map_err(conv)?,
            },
            Operator::BrOnCastFail {
                relative_depth,
                from_ref_type,
                to_ref_type,
            } => Instruction::BrOnCastFail {
                relative_depth: self.map_depth(relative_depth)?,
                from_ref_type: RoundtripReencoder.ref_type(from_ref_type).map_err(conv)?,
                to_ref_type: RoundtripReencoder.ref_type(to_ref_type).map_err(conv)?,
            },
            Operator::TryTable { try_table } => {
                let mut catches = Vec::with_capacity(try_table.catches.len());
                for c in try_table.catches {
                    catches.push(match c {
                        wasmparser::Catch::One { tag, label } => wasm_encoder::Catch::One {
                            tag,
                            label: self.map_depth(label)?,
                        },
                        wasmparser::Catch::OneRef { tag, label } => wasm_encoder::Catch::OneRef {
                            tag,
                            label: self.map_depth(label)?,
                        },
                        wasmparser::Catch::All { label } => wasm_encoder::Catch::All {
                            label: self.map_depth(label)?,
                        },
                        wasmparser::Catch::AllRef { label } => wasm_encoder::Catch::AllRef {
                            label: self.map_depth(label)?,
                        },
                    });
                }
                let bt = RoundtripReencoder.block_type(try_table.ty).map_err(conv)?;
                Instruction::TryTable(bt, catches.into())
            }
            Operator::Try { .. }
            | Operator::Catch { .. }
            | Operator::CatchAll
            | Operator::Delegate { .. }
            | Operator::Rethrow { .. } => {
                return Err(Error::Unsupported(
                    "legacy exception handling (try/catch/delegate)".into(),
                ))
            }
            op => RoundtripReencoder.instruction(op).map_err(conv)?,
        })
    }

    /// Every local this frame saves, in order: the original locals, then Tern's own except the
    /// frame pointer (which only lives while saving or restoring).
    fn saved_locals(&self) -> Vec<(u32, ValType)> {
        let mut out: Vec<(u32, ValType)> = self
            .locals
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u32, *t))
            .collect();
        let base = self.locals.len() as u32;
        for (k, t) in self.new_locals.iter().enumerate() {
            let l = base + k as u32;
            if l != self.fp {
                out.push((l, *t));
            }
        }
        out
    }

    fn save_frame(
        &mut self,
        func_index: u32,
        slots: &[(u32, ValType, u32)],
        size: u32,
    ) -> Result<()> {
        // Scalars were stored at the resume point, which also set the frame pointer and made
        // room; references cannot be told apart by liveness cheaply and are few: save them all.
        let frames = self.facts.frames_memory;
        let fp = self.fp;
        for &(local, t, _) in slots {
            {
                if let ValType::Ref(r) = t {
                    let class = ref_class(r)
                        .ok_or_else(|| Error::Unsupported(format!("a local of type {r}")))?;
                    let (table, rsp) = self.facts.ref_tables[class];
                    let null = Instruction::RefNull(null_heap(class));
                    let c = &mut self.code;
                    c.push(Instruction::GlobalGet(rsp));
                    c.push(Instruction::TableSize(table));
                    c.push(Instruction::I32GeU);
                    c.push(Instruction::If(BlockType::Empty));
                    c.push(null);
                    c.push(Instruction::I32Const(64));
                    c.push(Instruction::TableGrow(table));
                    c.push(Instruction::Drop);
                    c.push(Instruction::End);
                    c.push(Instruction::GlobalGet(rsp));
                    c.push(Instruction::LocalGet(local));
                    c.push(Instruction::TableSet(table));
                    c.push(Instruction::GlobalGet(rsp));
                    c.push(Instruction::I32Const(1));
                    c.push(Instruction::I32Add);
                    c.push(Instruction::GlobalSet(rsp));
                }
            }
        }
        let trailer = size - crate::FRAME_TRAILER;
        let rp = self.rp;
        let c = &mut self.code;
        for (k, v) in [(0u32, None), (4, Some(func_index)), (8, Some(size))] {
            c.push(Instruction::LocalGet(fp));
            match v {
                None => c.push(Instruction::LocalGet(rp)),
                Some(v) => c.push(Instruction::I32Const(v as i32)),
            }
            c.push(Instruction::I32Store(arg((trailer + k) as u64, frames)));
        }
        c.push(Instruction::LocalGet(fp));
        c.push(Instruction::I32Const(size as i32));
        c.push(Instruction::I32Add);
        c.push(Instruction::GlobalSet(self.facts.sp_global));
        c.push(Instruction::Call(self.facts.headroom_func));
        Ok(())
    }

    fn restore_frame(&mut self, slots: &[(u32, ValType, u32)], size: u32) -> Result<()> {
        let frames = self.facts.frames_memory;
        let fp = self.fp;
        self.code.push(Instruction::GlobalGet(self.facts.sp_global));
        self.code.push(Instruction::I32Const(size as i32));
        self.code.push(Instruction::I32Sub);
        self.code.push(Instruction::LocalTee(fp));
        self.code.push(Instruction::GlobalSet(self.facts.sp_global));
        for &(local, t, off) in slots {
            if !matches!(t, ValType::Ref(_)) {
                self.code.push(Instruction::LocalGet(fp));
                self.code.push(load(t, arg(off as u64, frames))?);
                self.code.push(Instruction::LocalSet(local));
            }
        }
        // References were pushed in local order, so they come back in reverse.
        for &(local, t, _) in slots.iter().rev() {
            let ValType::Ref(r) = t else { continue };
            let class =
                ref_class(r).ok_or_else(|| Error::Unsupported(format!("a local of type {r}")))?;
            let (table, rsp) = self.facts.ref_tables[class];
            let c = &mut self.code;
            c.push(Instruction::GlobalGet(rsp));
            c.push(Instruction::I32Const(1));
            c.push(Instruction::I32Sub);
            c.push(Instruction::GlobalSet(rsp));
            c.push(Instruction::GlobalGet(rsp));
            c.push(Instruction::TableGet(table));
            c.push(Instruction::LocalSet(local));
            c.push(Instruction::GlobalGet(rsp));
            c.push(Instruction::RefNull(null_heap(class)));
            c.push(Instruction::TableSet(table));
        }
        Ok(())
    }
}

fn item_of(n: &Node) -> Result<&Item> {
    match n {
        Node::Item(i) => Ok(i),
        _ => Err(Error::Encode("expected a resume point".into())),
    }
}

fn null_heap(class: usize) -> wasm_encoder::HeapType {
    let ty = match class {
        0 => wasm_encoder::AbstractHeapType::Func,
        1 => wasm_encoder::AbstractHeapType::Extern,
        _ => wasm_encoder::AbstractHeapType::Exn,
    };
    wasm_encoder::HeapType::Abstract { shared: false, ty }
}

/// Bytes a local takes in the frame memory (references live in tables instead).
fn scalar_size(t: ValType) -> u32 {
    match t {
        ValType::I32 | ValType::F32 => 4,
        ValType::I64 | ValType::F64 => 8,
        ValType::V128 => 16,
        ValType::Ref(_) => 0,
    }
}

fn store<'x>(t: ValType, m: MemArg) -> Result<Instruction<'x>> {
    Ok(match t {
        ValType::I32 => Instruction::I32Store(m),
        ValType::I64 => Instruction::I64Store(m),
        ValType::F32 => Instruction::F32Store(m),
        ValType::F64 => Instruction::F64Store(m),
        ValType::V128 => Instruction::V128Store(m),
        ValType::Ref(_) => return Err(Error::Encode("reference stored to memory".into())),
    })
}

fn load<'x>(t: ValType, m: MemArg) -> Result<Instruction<'x>> {
    Ok(match t {
        ValType::I32 => Instruction::I32Load(m),
        ValType::I64 => Instruction::I64Load(m),
        ValType::F32 => Instruction::F32Load(m),
        ValType::F64 => Instruction::F64Load(m),
        ValType::V128 => Instruction::V128Load(m),
        ValType::Ref(_) => return Err(Error::Encode("reference loaded from memory".into())),
    })
}

fn dummy<'x>(t: ValType) -> Result<Instruction<'x>> {
    Ok(match t {
        ValType::I32 => Instruction::I32Const(0),
        ValType::I64 => Instruction::I64Const(0),
        ValType::F32 => Instruction::F32Const(0.0.into()),
        ValType::F64 => Instruction::F64Const(0.0.into()),
        ValType::V128 => Instruction::V128Const(0),
        ValType::Ref(r) => match ref_class(r) {
            Some(class) if r.is_nullable() => Instruction::RefNull(null_heap(class)),
            _ => return Err(Error::Unsupported(format!("a function returning {r}"))),
        },
    })
}
