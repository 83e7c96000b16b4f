//! Cheaper polls for innermost loops: counted loops, unrolled short loops and strides.
//!
//! A poll at a loop's top costs a load and a branch on every iteration, and in a tight loop also
//! the register that holds the flag's address: that was most of Tern's remaining run-time cost
//! (Flite's filter loops). For a loop whose only resume point is its own poll, the running form
//! does better in three ways:
//!
//! - Counted loops. The loop's only way back to its top is a `br_if 0` at its body's top level,
//!   and what it tests is an `i32` counter stepped by a constant once per iteration against a
//!   constant or a local the loop does not write (or the counter itself, `!= 0`): the shape
//!   clang gives `for` loops, rotated. The number of iterations is then known on entry, exactly,
//!   wrap-around included; if the loop will end within [`BUDGET`] operations it runs a copy
//!   without the poll: the next poll after it comes soon enough.
//! - Unrolled short loops. A short body without calls runs [`UNROLL`] times per poll, as copies
//!   that go on to the next copy where the body went round, or leave where it did not.
//! - Strides, for the other loops. Some local is stepped by a constant once per iteration
//!   (however the loop ends: strcmp's pointers, `while` loops). The poll first tests bits of
//!   that local, already in a register, and loads the flag only when they are zero, which
//!   happens at least once in any 2^m iterations, 2^m iterations within the same budget.

use wasm_encoder::Instruction;
use wasmparser::Operator;

/// Operations a poll-free loop may run before its end, at most: 65,536 (under a millisecond
/// at one operation per nanosecond, 6.5 ms even if every one missed the cache).
pub const BUDGET: u64 = 1 << 16;

/// What the counter is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Const(i32),
    Local(u32),
}

/// When the loop goes round again, comparing the stepped counter with the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// `counter < bound` (or `<=` with the bound one higher), signed or not; the step is
    /// positive.
    Below { signed: bool, or_equal: bool },
    /// `counter > bound` (or `>=`), signed or not; the step is negative.
    Above { signed: bool, or_equal: bool },
    /// `counter != bound`.
    NotEqual,
}

/// A counted loop and the most iterations it may run without a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub counter: u32,
    pub step: i32,
    pub bound: Bound,
    pub again: Again,
    /// Iterations allowed without a poll: [`BUDGET`] over the body's cost.
    pub max_trips: u32,
}

/// Cost of a call or a bulk memory operation, in operations (a callee that cannot unwind has no
/// loops and no cycles, so it ends, but it may be long).
const HEAVY: u64 = 1000;

/// A loop with one way back to its top, at its body's top level: what the two uses below need.
struct Shape<'s, 'o> {
    /// The whole body.
    body: &'s [Operator<'o>],
    /// The body before the way back (every iteration that goes round runs all of its top level).
    before: &'s [Operator<'o>],
    /// Whether the way back is a `br_if 0` (else a `br 0`).
    conditional: bool,
    /// The body's cost in operations.
    cost: u64,
}

fn shape<'s, 'o>(ops: &'s [Operator<'o>], open: usize) -> Option<Shape<'s, 'o>> {
    let Operator::Loop { .. } = ops.get(open)? else {
        return None;
    };
    let mut depth = 0usize;
    let mut end = None;
    let mut cost = 0u64;
    for (i, op) in ops.iter().enumerate().skip(open + 1) {
        match op {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. } => depth += 1,
            Operator::End => {
                if depth == 0 {
                    end = Some(i);
                    break;
                }
                depth -= 1;
            }
            _ => {}
        }
        cost += match op {
            Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::CallRef { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryFill { .. }
            | Operator::MemoryInit { .. }
            | Operator::MemoryGrow { .. }
            | Operator::TableCopy { .. }
            | Operator::TableFill { .. }
            | Operator::TableInit { .. }
            | Operator::TableGrow { .. } => HEAVY,
            _ => 1,
        };
    }
    let body = &ops[open + 1..end?];
    // What follows the way back runs once, on the way out (or never, after a `br 0`).
    let (back, conditional) = back_edge(body)?;
    let (before, after) = (&body[..back], &body[back + 1..]);
    if branches_to_top(before) || branches_to_top(after) {
        return None;
    }
    Some(Shape {
        body,
        before,
        conditional,
        cost,
    })
}

/// Each operator of `ops` (a stretch of a body) with its index and how many blocks opened
/// within `ops` enclose it (0: the stretch's top level; a block's own `end` counts as inside).
pub(crate) fn nested<'s, 'o>(
    ops: &'s [Operator<'o>],
) -> impl Iterator<Item = (usize, u32, &'s Operator<'o>)> {
    let mut depth = 0u32;
    ops.iter().enumerate().map(move |(i, op)| {
        let at = depth;
        match op {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. } => depth += 1,
            Operator::End => depth = depth.saturating_sub(1),
            _ => {}
        }
        (i, at, op)
    })
}

/// How many times `local` is written in `ops`.
fn writes(ops: &[Operator<'_>], local: u32) -> usize {
    ops.iter()
        .filter(|op| {
            matches!(op, Operator::LocalSet { local_index } | Operator::LocalTee { local_index }
                if *local_index == local)
        })
        .count()
}

/// What the running form may do for the loop opened at `ops[open]`. Does not check that the
/// loop contains no resume point other than its own poll: the caller knows that.
#[derive(Debug, Default)]
pub struct Plan {
    /// A poll-free copy when it will end soon.
    pub counted: Option<Counted>,
    /// A strided poll.
    pub stride: Option<Stride>,
    /// Copies of the body between polls. Excludes `stride`: the strided local moves several
    /// steps between two polls then, and its bits might never be zero at one.
    pub unroll: Option<Unroll>,
}

/// How many times an unrolled loop's body runs per poll.
pub const UNROLL: u32 = 4;

/// Operations a loop body may have to be unrolled: the copies grow the code, and in a longer
/// body a poll is a smaller share of an iteration anyway.
const UNROLL_UP_TO: u64 = 40;

/// A short loop run as [`UNROLL`] copies of its body per poll: the copies before the last end
/// where the way back was, going on to the next copy, or (for a `br_if 0`) leaving the loop
/// when it would not have gone round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unroll {
    /// Index in the function's operators of the way back (`br_if 0` or `br 0`).
    pub back: usize,
    /// Whether the way back is a `br_if 0`: each copy but the last then ends `i32.eqz ; br_if`
    /// to a block around the loop.
    pub conditional: bool,
}

pub fn plan(ops: &[Operator<'_>], open: usize) -> Plan {
    let Some(shape) = shape(ops, open) else {
        return Plan::default();
    };
    // A loop with parameters would need the copies' dispatch to pass them. Rare in practice.
    let params = matches!(
        ops[open],
        Operator::Loop {
            blockty: wasmparser::BlockType::FuncType(_)
        }
    );
    let unroll = if params {
        None
    } else {
        unroll(&shape, ops, open)
    };
    Plan {
        counted: if params { None } else { counted(&shape) },
        stride: if unroll.is_some() {
            None
        } else {
            stride(&shape)
        },
        unroll,
    }
}

/// Whether the loop opened at `ops[open]` can be unrolled. The copies must fit together: after
/// a `br 0` the operand stack is dropped, so whatever a copy leaves there is too; a `br_if 0`
/// must be the body's last operator and the loop take and give nothing, so that each copy
/// leaves the stack empty.
fn unroll(shape: &Shape<'_, '_>, ops: &[Operator<'_>], open: usize) -> Option<Unroll> {
    if shape.cost > UNROLL_UP_TO || shape.cost * u64::from(UNROLL) > BUDGET {
        return None;
    }
    let back = shape.before.len();
    if shape.conditional
        && (back + 1 != shape.body.len()
            || !matches!(
                ops[open],
                Operator::Loop {
                    blockty: wasmparser::BlockType::Empty
                }
            ))
    {
        return None;
    }
    Some(Unroll {
        back: open + 1 + back,
        conditional: shape.conditional,
    })
}

/// Whether the loop is counted.
fn counted(shape: &Shape<'_, '_>) -> Option<Counted> {
    if !shape.conditional {
        return None;
    }
    let (counter, step, bound, again) = condition(shape.before)?;
    // The counter is written exactly once, by its step; the bound not at all.
    if writes(shape.body, counter) != 1 {
        return None;
    }
    if let Bound::Local(b) = bound {
        if b == counter || writes(shape.body, b) != 0 {
            return None;
        }
    }
    if step == 0 || step.unsigned_abs() > 1 << 11 {
        return None;
    }
    match again {
        Again::Below { .. } if step < 0 => return None,
        Again::Above { .. } if step > 0 => return None,
        _ => {}
    }
    let max_trips = (BUDGET / shape.cost.max(1)).max(1) as u32;
    Some(Counted {
        counter,
        step,
        bound,
        again,
        max_trips,
    })
}

/// A poll that loads the flag only when `local & mask == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stride {
    pub local: u32,
    pub mask: i32,
}

/// For the loop, if some local steps by a constant once per iteration
/// (however the loop ends): a mask on it that is zero at least once every 2^m iterations, with
/// 2^m iterations within [`BUDGET`]. A step `k = odd · 2^j` moves the bits above `j` by an odd
/// amount, so their low `m` bits go through every value in any 2^m iterations.
///
/// Testing a value already in a register replaces the flag's load (and the register holding
/// the flag's address) on every iteration; the load comes every 2^m iterations instead.
fn stride(shape: &Shape<'_, '_>) -> Option<Stride> {
    let per_budget = BUDGET / shape.cost.max(1);
    if per_budget < 2 {
        return None;
    }
    for (i, depth, op) in nested(shape.before) {
        match op {
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index }
                if depth == 0 =>
            {
                let Some(step) = step_before(shape.before, i, *local_index) else {
                    continue;
                };
                if step == 0 || writes(shape.body, *local_index) != 1 {
                    continue;
                }
                let Some(mask) = stride_mask(step, per_budget) else {
                    continue;
                };
                return Some(Stride {
                    local: *local_index,
                    mask,
                });
            }
            _ => {}
        }
    }
    None
}

/// For a counter stepped by `step` (not 0): a mask that is zero on it at least once in any
/// 2^m consecutive iterations, 2^m the largest power of two at most `iterations`.
fn stride_mask(step: i32, iterations: u64) -> Option<i32> {
    let j = step.trailing_zeros();
    let m = iterations.checked_ilog2()?.min(32 - j);
    if m == 0 {
        return None;
    }
    Some((((1u64 << m) - 1) << j) as u32 as i32)
}

/// The way back at the top level of a loop body: the last `br_if 0` or `br 0` there, and
/// whether it is the conditional one.
fn back_edge(body: &[Operator<'_>]) -> Option<(usize, bool)> {
    nested(body)
        .filter_map(|(i, depth, op)| match op {
            Operator::BrIf { relative_depth: 0 } if depth == 0 => Some((i, true)),
            Operator::Br { relative_depth: 0 } if depth == 0 => Some((i, false)),
            _ => None,
        })
        .last()
}

/// Whether any branch in `ops` (a stretch of a loop body at its top level) goes to the loop's
/// top.
pub(crate) fn branches_to_top(ops: &[Operator<'_>]) -> bool {
    nested(ops).any(|(_, top, op)| {
        // `top`: the loop's label as branches at this nesting count it.
        match op {
            // Catch labels count from outside the `try_table`.
            Operator::TryTable { try_table } => try_table.catches.iter().any(|c| match c {
                wasmparser::Catch::One { label, .. }
                | wasmparser::Catch::OneRef { label, .. }
                | wasmparser::Catch::All { label }
                | wasmparser::Catch::AllRef { label } => *label == top,
            }),
            Operator::Br { relative_depth }
            | Operator::BrIf { relative_depth }
            | Operator::BrOnNull { relative_depth }
            | Operator::BrOnNonNull { relative_depth }
            | Operator::BrOnCast { relative_depth, .. }
            | Operator::BrOnCastFail { relative_depth, .. } => *relative_depth == top,
            Operator::BrTable { targets } => {
                targets.default() == top || targets.targets().any(|t| t.is_ok_and(|t| t == top))
            }
            _ => false,
        }
    })
}

/// One operand of the comparison before the `br_if`.
enum Operand {
    /// `local.get c ; i32.const k ; i32.add ; local.tee c`: the counter, stepped right here.
    Stepped(u32, i32),
    Get(u32),
    Const(i32),
}

/// The operand that ends just before `ops[end]`, and where it starts.
fn operand(ops: &[Operator<'_>], end: usize) -> Option<(Operand, usize)> {
    use Operator as O;
    let last = end.checked_sub(1)?;
    match ops.get(last)? {
        O::LocalTee { local_index } => {
            let step = step_before(ops, last, *local_index)?;
            Some((Operand::Stepped(*local_index, step), last - 3))
        }
        O::LocalGet { local_index } => Some((Operand::Get(*local_index), last)),
        O::I32Const { value } => Some((Operand::Const(*value), last)),
        _ => None,
    }
}

/// The condition before the back edge (`ops` ends just before it), at the body's top level:
/// the counter, its step, the bound and the comparison.
fn condition(ops: &[Operator<'_>]) -> Option<(u32, i32, Bound, Again)> {
    let n = ops.len();
    let last = ops.get(n.checked_sub(1)?)?;
    // `br_if` on the stepped counter itself: round again while it is not zero.
    if let Some((Operand::Stepped(c, step), _)) = operand(ops, n) {
        return Some((c, step, Bound::Const(0), Again::NotEqual));
    }
    let again = again_of(last)?;
    let (right, split) = operand(ops, n - 1)?;
    let (left, start) = operand(ops, split)?;
    // Either side may be the counter; `b < c` is `c > b`.
    let swapped = match again {
        Again::Below { signed, or_equal } => Again::Above { signed, or_equal },
        Again::Above { signed, or_equal } => Again::Below { signed, or_equal },
        Again::NotEqual => Again::NotEqual,
    };
    for (counter, bound, again) in [(&left, &right, again), (&right, &left, swapped)] {
        let bound = match bound {
            Operand::Get(b) => Bound::Local(*b),
            Operand::Const(v) => Bound::Const(*v),
            Operand::Stepped(..) => continue,
        };
        match counter {
            Operand::Stepped(c, step) => return Some((*c, *step, bound, again)),
            Operand::Get(c) => {
                if let Some(step) = step_earlier(&ops[..start], *c) {
                    return Some((*c, step, bound, again));
                }
            }
            Operand::Const(_) => {}
        }
    }
    None
}

/// The step of counter `c` written at the top level of `ops` (as `get c; const k; add; set c`
/// or `tee c`), if it is written there.
fn step_earlier(ops: &[Operator<'_>], c: u32) -> Option<i32> {
    use Operator as O;
    let mut found = None;
    for (i, depth, op) in nested(ops) {
        if let O::LocalSet { local_index } | O::LocalTee { local_index } = op {
            if *local_index == c && depth == 0 {
                found = Some(step_before(ops, i, c)?);
            }
        }
    }
    found
}

/// The constant `k` if `ops[..at]` ends with `local.get c ; i32.const k ; i32.add` (or `sub`).
fn step_before(ops: &[Operator<'_>], at: usize, c: u32) -> Option<i32> {
    use Operator as O;
    let get = ops.get(at.checked_sub(3)?)?;
    let konst = ops.get(at - 2)?;
    let op = ops.get(at - 1)?;
    match (get, konst, op) {
        (O::LocalGet { local_index }, O::I32Const { value }, O::I32Add) if *local_index == c => {
            Some(*value)
        }
        (O::LocalGet { local_index }, O::I32Const { value }, O::I32Sub) if *local_index == c => {
            value.checked_neg()
        }
        _ => None,
    }
}

fn again_of(op: &Operator<'_>) -> Option<Again> {
    use Operator as O;
    let (below, signed, or_equal) = match op {
        O::I32LtS => (true, true, false),
        O::I32LtU => (true, false, false),
        O::I32LeS => (true, true, true),
        O::I32LeU => (true, false, true),
        O::I32GtS => (false, true, false),
        O::I32GtU => (false, false, false),
        O::I32GeS => (false, true, true),
        O::I32GeU => (false, false, true),
        O::I32Ne => return Some(Again::NotEqual),
        _ => return None,
    };
    Some(if below {
        Again::Below { signed, or_equal }
    } else {
        Again::Above { signed, or_equal }
    })
}

/// Instructions that leave an `i32` on the stack: non-zero if the loop, entered now, ends
/// within `max_trips` iterations, so it may run without a poll. Exact (see the module note), so
/// it is never true for a loop that would wrap its counter around and run on. `None` if that can
/// be told now: the loop never qualifies.
pub fn fits(c: &Counted) -> Option<Vec<Instruction<'static>>> {
    use Instruction as I;
    let s = i64::from(c.step.unsigned_abs());
    let k = i64::from(c.max_trips);
    let mut out = Vec::new();
    let (signed, or_equal, below) = match c.again {
        Again::NotEqual => {
            // d, the distance the counter must travel (mod 2^32): 1 ..= k·s and a multiple of s.
            let distance = |out: &mut Vec<I<'static>>| {
                let (first, second) = if c.step > 0 {
                    (Some(c.bound), None)
                } else {
                    (None, Some(c.bound))
                };
                match first {
                    Some(b) => push_bound32(out, b),
                    None => out.push(I::LocalGet(c.counter)),
                }
                match second {
                    Some(b) => push_bound32(out, b),
                    None => out.push(I::LocalGet(c.counter)),
                }
                out.push(I::I32Sub);
            };
            distance(&mut out);
            out.push(I::I32Const(1));
            out.push(I::I32Sub);
            out.push(I::I32Const((k * s) as i32));
            out.push(I::I32LtU);
            if s > 1 {
                distance(&mut out);
                if s.count_ones() == 1 {
                    out.push(I::I32Const((s - 1) as i32));
                    out.push(I::I32And);
                } else {
                    out.push(I::I32Const(s as i32));
                    out.push(I::I32RemU);
                }
                out.push(I::I32Eqz);
                out.push(I::I32And);
            }
            return Some(out);
        }
        Again::Below { signed, or_equal } => (signed, or_equal, true),
        Again::Above { signed, or_equal } => (signed, or_equal, false),
    };
    let (min, max) = if signed {
        (i64::from(i32::MIN), i64::from(i32::MAX))
    } else {
        (0, i64::from(u32::MAX))
    };
    let ext = if signed {
        I::I64ExtendI32S
    } else {
        I::I64ExtendI32U
    };
    // y: the bound made strict: `x <= b` is `x < b + 1`, `x >= b` is `x > b - 1`.
    let adjust = match (or_equal, below) {
        (false, _) => 0,
        (true, true) => 1,
        (true, false) => -1,
    };
    let y = |out: &mut Vec<I<'static>>| match c.bound {
        Bound::Const(b) => {
            let v = if signed {
                i64::from(b)
            } else {
                i64::from(b as u32)
            };
            out.push(I::I64Const(v + adjust));
        }
        Bound::Local(l) => {
            out.push(I::LocalGet(l));
            out.push(ext.clone());
            if adjust != 0 {
                out.push(I::I64Const(adjust));
                out.push(I::I64Add);
            }
        }
    };
    let x = |out: &mut Vec<I<'static>>| {
        out.push(I::LocalGet(c.counter));
        out.push(ext.clone());
    };
    // Going up (going down mirrors it): at most k·s to travel; the last step must not wrap,
    // which holds when the strict bound is at most max - s + 1 and the start at most max - s.
    if below {
        y(&mut out);
        x(&mut out);
    } else {
        x(&mut out);
        y(&mut out);
    }
    out.push(I::I64Sub);
    out.push(I::I64Const(k * s));
    out.push(I::I64LeS);
    let y_ok = |v: i64| {
        if below {
            v <= max - s + 1
        } else {
            v >= min + s - 1
        }
    };
    match c.bound {
        Bound::Const(b) => {
            let v = if signed {
                i64::from(b)
            } else {
                i64::from(b as u32)
            };
            if !y_ok(v + adjust) {
                return None;
            }
        }
        Bound::Local(_) => {
            y(&mut out);
            if below {
                out.push(I::I64Const(max - s + 1));
                out.push(I::I64LeS);
            } else {
                out.push(I::I64Const(min + s - 1));
                out.push(I::I64GeS);
            }
            out.push(I::I32And);
        }
    }
    x(&mut out);
    if below {
        out.push(I::I64Const(max - s));
        out.push(I::I64LeS);
    } else {
        out.push(I::I64Const(min + s));
        out.push(I::I64GeS);
    }
    out.push(I::I32And);
    Some(out)
}

fn push_bound32(out: &mut Vec<Instruction<'static>>, b: Bound) {
    match b {
        Bound::Const(v) => out.push(Instruction::I32Const(v)),
        Bound::Local(l) => out.push(Instruction::LocalGet(l)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ops::ops_of;

    /// `analyse` applied to the first loop of the function in `wat`.
    fn first_loop<T>(wat: &str, analyse: fn(&[Operator<'_>], usize) -> Option<T>) -> Option<T> {
        let (ops, _) = ops_of(wat);
        let open = ops
            .iter()
            .position(|op| matches!(op, Operator::Loop { .. }))
            .expect("a loop");
        analyse(&ops, open)
    }

    fn counted_in(wat: &str) -> Option<Counted> {
        first_loop(wat, |ops, open| plan(ops, open).counted)
    }

    /// A function with locals $c (counter, 0) and $b (bound, 1) around a loop `body`.
    fn func(body: &str) -> String {
        format!("(module (memory 1) (func (param $c i32) (param $b i32) (local $x i32) {body}))")
    }

    #[test]
    fn clang_shapes_are_recognised() {
        let cases: &[(&str, i32, Bound, Again)] = &[
            // `c += -4; again while c > 4`, the step right before the test.
            (
                "(loop $l (i32.store (local.get $c) (i32.const 1))
                   (br_if $l (i32.gt_s (local.tee $c (i32.add (local.get $c) (i32.const -4)))
                                       (i32.const 4))))",
                -4,
                Bound::Const(4),
                Again::Above {
                    signed: true,
                    or_equal: false,
                },
            ),
            // The bound first: `b != ++c`.
            (
                "(loop $l (i32.store (local.get $c) (i32.const 1))
                   (br_if $l (i32.ne (local.get $b)
                                     (local.tee $c (i32.add (local.get $c) (i32.const 1))))))",
                1,
                Bound::Local(1),
                Again::NotEqual,
            ),
            // Stepped earlier, tested later; the bound first, so `b > c` is `c < b`.
            (
                "(loop $l (local.set $c (i32.sub (local.get $c) (i32.const -2)))
                   (i32.store (local.get $x) (local.get $c))
                   (br_if $l (i32.gt_u (local.get $b) (local.get $c))))",
                2,
                Bound::Local(1),
                Again::Below {
                    signed: false,
                    or_equal: false,
                },
            ),
            // No comparison: again while the stepped counter is not zero; a way out after it.
            (
                "(block $out (loop $l (local.set $x (i32.mul (local.get $x) (i32.const 3)))
                   (br_if $l (local.tee $c (i32.add (local.get $c) (i32.const -8))))
                   (br $out)))",
                -8,
                Bound::Const(0),
                Again::NotEqual,
            ),
        ];
        for (body, step, bound, again) in cases {
            let c = counted_in(&func(body)).unwrap_or_else(|| panic!("not counted: {body}"));
            assert_eq!(
                (c.counter, c.step, c.bound, c.again),
                (0, *step, *bound, *again),
                "{body}"
            );
            assert!(
                c.max_trips > 1000 && u64::from(c.max_trips) < BUDGET,
                "{body}"
            );
        }
    }

    #[test]
    fn loops_that_may_run_on_are_not_counted() {
        for body in [
            // A second way back to the top (a `continue`) that skips the step.
            "(loop $l (br_if $l (local.get $x))
               (br_if $l (i32.ne (local.tee $c (i32.add (local.get $c) (i32.const 1)))
                                 (local.get $b))))",
            // The counter written twice.
            "(loop $l (local.set $c (i32.mul (local.get $c) (local.get $x)))
               (br_if $l (i32.ne (local.tee $c (i32.add (local.get $c) (i32.const 1)))
                                 (local.get $b))))",
            // The bound written in the loop.
            "(loop $l (local.set $b (i32.add (local.get $b) (i32.const 1)))
               (br_if $l (i32.ne (local.tee $c (i32.add (local.get $c) (i32.const 1)))
                                 (local.get $b))))",
            // The step inside a block that an iteration may skip.
            "(loop $l (block $s (br_if $s (local.get $x))
                 (local.set $c (i32.add (local.get $c) (i32.const 1))))
               (br_if $l (i32.lt_u (local.get $c) (local.get $b))))",
            // Counting up while above the bound, or by a step not known.
            "(loop $l (br_if $l (i32.gt_s (local.tee $c (i32.add (local.get $c) (i32.const 1)))
                                          (i32.const 4))))",
            "(loop $l (br_if $l (i32.ne (local.tee $c (i32.add (local.get $c) (local.get $x)))
                                        (local.get $b))))",
            // A catch that lands on the loop's top.
            "(loop $l (try_table (catch_all $l) (nop))
               (br_if $l (i32.ne (local.tee $c (i32.add (local.get $c) (i32.const 1)))
                                 (local.get $b))))",
            // Not the counter but a value loaded from memory.
            "(loop $l (br_if $l (i32.ne (i32.load (local.get $c)) (local.get $b))))",
        ] {
            assert_eq!(counted_in(&func(body)), None, "{body}");
        }
    }

    #[test]
    fn strides_are_found_however_the_loop_ends() {
        // strcmp's shape: two pointers stepped, a way out on the data, the way back on it too.
        let s = stride_in(&func(
            "(block $out (loop $l
               (br_if $out (i32.eqz (i32.load8_u (local.get $c))))
               (local.set $c (i32.add (local.get $c) (i32.const 1)))
               (local.set $b (i32.add (local.get $b) (i32.const 1)))
               (br_if $l (i32.eq (i32.load8_u (local.get $c)) (i32.load8_u (local.get $b))))))",
        ))
        .expect("strided");
        assert_eq!(s.local, 0);
        assert_eq!(s.mask & 1, 1, "a step of 1 tests the lowest bits");
        // A `while` loop: the way out at the top, an unconditional way back at the end.
        let s = stride_in(&func(
            "(block $out (loop $l
               (br_if $out (i32.eqz (local.get $b)))
               (local.set $b (i32.add (local.get $b) (i32.const -8)))
               (br $l)))",
        ))
        .expect("strided");
        assert_eq!(
            (s.local, s.mask & 7),
            (1, 0),
            "a step of 8 leaves the low 3 bits"
        );
        for body in [
            // Stepped only on some iterations.
            "(loop $l (if (local.get $x) (then
                 (local.set $c (i32.add (local.get $c) (i32.const 1)))))
               (br_if $l (local.get $b)))",
            // Stepped and also set otherwise.
            "(loop $l (local.set $c (i32.add (local.get $c) (i32.const 1)))
               (local.set $c (i32.and (local.get $c) (i32.const 255)))
               (br_if $l (local.get $b)))",
            // A second way back that skips the step.
            "(loop $l (br_if $l (local.get $x))
               (local.set $c (i32.add (local.get $c) (i32.const 1)))
               (br_if $l (local.get $b)))",
        ] {
            assert_eq!(stride_in(&func(body)), None, "{body}");
        }
    }

    /// The stride of the first loop, whether or not the plan unrolls it instead.
    fn stride_in(wat: &str) -> Option<Stride> {
        first_loop(wat, |ops, open| stride(&shape(ops, open)?))
    }

    #[test]
    fn short_loops_are_unrolled_and_then_not_strided() {
        let unrolled = |wat: &str| {
            let (ops, _) = ops_of(wat);
            let open = ops
                .iter()
                .position(|op| matches!(op, Operator::Loop { .. }))
                .expect("a loop");
            let p = plan(&ops, open);
            p.unroll.map(|u| {
                assert!(p.stride.is_none(), "unrolled and strided: {wat}");
                (u.back - open, u.conditional)
            })
        };
        // strcmp's shape: the way back a `br_if 0`, last in the body.
        let strcmp = "(block $out (loop $l
               (br_if $out (i32.eqz (i32.load8_u (local.get $c))))
               (local.set $c (i32.add (local.get $c) (i32.const 1)))
               (br_if $l (i32.eq (i32.load8_u (local.get $c)) (i32.load8_u (local.get $b))))))";
        assert_eq!(unrolled(&func(strcmp)), Some((14, true)));
        // A `while`: the way back a `br 0`, whatever the stack holds.
        let whiles = "(block $out (loop $l
               (br_if $out (i32.eqz (local.get $b)))
               (local.set $b (i32.add (local.get $b) (i32.const -8)))
               (br $l)))";
        assert_eq!(unrolled(&func(whiles)), Some((8, false)));
        for body in [
            // A result: each copy would leave a value under its test.
            "(drop (loop $l (result i32) (local.set $c (i32.add (local.get $c) (i32.const 1)))
               (local.get $c) (br_if $l (local.get $b))))",
            // Something after the `br_if 0`, run on the way out.
            "(loop $l (local.set $c (i32.add (local.get $c) (i32.const 1)))
               (br_if $l (local.get $b)) (local.set $x (local.get $c)))",
            // A call: no longer short.
            "(loop $l (call 0 (local.get $c) (local.get $b)) (br_if $l (local.get $c)))",
            // Parameters.
            "(i32.const 0) (loop $l (param i32) (local.set $c) (i32.const 1) (br_if $l (local.get $b)))",
        ] {
            assert_eq!(unrolled(&func(body)), None, "{body}");
        }
        // A long body.
        let long = (0..20)
            .map(|_| "(local.set $c (i32.add (local.get $c) (i32.const 1)))")
            .collect::<String>();
        assert_eq!(
            unrolled(&func(&format!(
                "(loop $l {long} (br_if $l (local.get $b)))"
            ))),
            None
        );
    }

    /// From any start, a strided poll loads the flag within the iterations allowed.
    #[test]
    fn a_stride_mask_is_zero_within_its_iterations() {
        let starts: Vec<i32> = (-300..300)
            .chain([i32::MIN, i32::MAX, 0x1234_5677, -0x0765_4321])
            .collect();
        for step in [
            1,
            -1,
            2,
            3,
            -4,
            6,
            8,
            -12,
            1000,
            1 << 20,
            -(1 << 30),
            i32::MIN,
        ] {
            for iterations in [2u64, 3, 5, 100, 4096, 65_536] {
                let Some(mask) = stride_mask(step, iterations) else {
                    panic!("no mask for step {step}");
                };
                for &start in &starts {
                    let mut c = start;
                    let mut waited = 0u64;
                    while c & mask != 0 {
                        c = c.wrapping_add(step);
                        waited += 1;
                        assert!(
                            waited < iterations,
                            "step {step}, mask {mask:#x}, from {start}"
                        );
                    }
                }
            }
        }
        assert_eq!(stride_mask(5, 1), None);
    }

    /// Runs the check's instructions with the counter (local 0) at `start` and a local bound
    /// (local 1) at `bound`.
    fn eval(code: &[Instruction<'_>], start: i32, bound: i32) -> bool {
        use Instruction as I;
        #[derive(Clone, Copy)]
        enum V {
            W(i32),
            L(i64),
        }
        let w = |v: Option<V>| match v {
            Some(V::W(x)) => x,
            _ => panic!("expected an i32"),
        };
        let l = |v: Option<V>| match v {
            Some(V::L(x)) => x,
            _ => panic!("expected an i64"),
        };
        let mut st: Vec<V> = Vec::new();
        for i in code {
            let v = match i {
                I::I32Const(v) => V::W(*v),
                I::I64Const(v) => V::L(*v),
                I::LocalGet(0) => V::W(start),
                I::LocalGet(1) => V::W(bound),
                I::I64ExtendI32S => V::L(i64::from(w(st.pop()))),
                I::I64ExtendI32U => V::L(i64::from(w(st.pop()) as u32)),
                I::I32Eqz => V::W(i32::from(w(st.pop()) == 0)),
                _ => {
                    let (b, a) = (st.pop(), st.pop());
                    match i {
                        I::I64Sub => V::L(l(a).wrapping_sub(l(b))),
                        I::I64Add => V::L(l(a).wrapping_add(l(b))),
                        I::I64LeS => V::W(i32::from(l(a) <= l(b))),
                        I::I64GeS => V::W(i32::from(l(a) >= l(b))),
                        I::I32And => V::W(w(a) & w(b)),
                        I::I32Sub => V::W(w(a).wrapping_sub(w(b))),
                        I::I32LtU => V::W(i32::from((w(a) as u32) < (w(b) as u32))),
                        I::I32RemU => V::W(((w(a) as u32) % (w(b) as u32)) as i32),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            };
            st.push(v);
        }
        assert_eq!(st.len(), 1);
        w(st.pop()) != 0
    }

    /// Whether the loop, run as wasm runs it, ends within `max` iterations.
    fn ends_within(c: &Counted, start: i32, bound: i32, max: u32) -> bool {
        let mut x = start;
        for _ in 0..max {
            x = x.wrapping_add(c.step);
            let (xu, bu) = (x as u32, bound as u32);
            let again = match c.again {
                Again::NotEqual => x != bound,
                Again::Below {
                    signed: true,
                    or_equal,
                } => x < bound || (or_equal && x == bound),
                Again::Below {
                    signed: false,
                    or_equal,
                } => xu < bu || (or_equal && xu == bu),
                Again::Above {
                    signed: true,
                    or_equal,
                } => x > bound || (or_equal && x == bound),
                Again::Above {
                    signed: false,
                    or_equal,
                } => xu > bu || (or_equal && xu == bu),
            };
            if !again {
                return true;
            }
        }
        false
    }

    /// The check never lets a loop that runs on go without a poll (wrap-around included), and
    /// lets every loop that ends in time, away from the edges of the counter's range.
    #[test]
    fn the_entry_check_is_exact() {
        const MAX_TRIPS: u32 = 7;
        let mut agains = vec![Again::NotEqual];
        for signed in [true, false] {
            for or_equal in [true, false] {
                agains.push(Again::Below { signed, or_equal });
                agains.push(Again::Above { signed, or_equal });
            }
        }
        let mut values = Vec::new();
        for base in [i32::MIN, -1 << 30, -100, 0, 100, 1 << 30, i32::MAX] {
            for d in -40..=40 {
                values.push(base.wrapping_add(d));
            }
        }
        let mut checked = 0u64;
        for again in agains {
            for step in [1, -1, 2, -2, 3, -3, 4, -4, 8, -8] {
                if matches!(again, Again::Below { .. }) && step < 0
                    || matches!(again, Again::Above { .. }) && step > 0
                {
                    continue;
                }
                for constant in [false, true] {
                    for &bound in &values {
                        let c = Counted {
                            counter: 0,
                            step,
                            bound: if constant {
                                Bound::Const(bound)
                            } else {
                                Bound::Local(1)
                            },
                            again,
                            max_trips: MAX_TRIPS,
                        };
                        let check = fits(&c);
                        for &start in &values {
                            let ends = ends_within(&c, start, bound, MAX_TRIPS);
                            let says = check.as_ref().is_some_and(|code| eval(code, start, bound));
                            assert!(!says || ends, "{c:?} from {start} to {bound}: runs on");
                            // Near the range's edges the check may refuse a loop that would
                            // end: it does not reason about wrap-around that happens to end.
                            let ordinary =
                                [start, bound].iter().all(|v| v.unsigned_abs() < 1 << 29)
                                    && (matches!(c.again, Again::NotEqual)
                                        || [start, bound].iter().all(|v| *v >= 64)
                                        || matches!(
                                            c.again,
                                            Again::Below { signed: true, .. }
                                                | Again::Above { signed: true, .. }
                                        ));
                            if ordinary {
                                assert!(says || !ends, "{c:?} from {start} to {bound}: ends");
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 1_000_000, "{checked}");
    }
}
