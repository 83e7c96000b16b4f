//! Which locals are live at each point of a function: a backward dataflow over its control flow.
//!
//! A resume point saves only the locals live there, and what a save reads stays live up to it as
//! far as the compiler knows. Saving a dead local therefore costs in the running code, not only
//! in the save: it holds a register (or a stack slot) across every call and loop that the local
//! would otherwise not outlive. Exact liveness keeps the rewritten function's register pressure
//! close to the original's.
//!
//! The flow graph is the structured one: branches go to their block's end or their loop's top,
//! an `if` to its arms, and a call or throw inside a `try_table` may land at any of its catch
//! targets (and those of every enclosing `try_table`).

use wasmparser::Operator;

/// Live locals on entry to each operator, as bit sets of `words` words each.
pub struct Liveness {
    words: usize,
    live: Vec<u64>,
}

impl Liveness {
    /// How many locals are live just before operator `pos`.
    pub fn count(&self, pos: usize) -> usize {
        self.live
            .get(pos * self.words..(pos + 1) * self.words)
            .map_or(0, |ws| ws.iter().map(|w| w.count_ones() as usize).sum())
    }

    /// Whether `local` is live just before operator `pos` (for a call: across it; for a loop:
    /// at its top).
    pub fn is_live(&self, local: usize, pos: usize) -> bool {
        self.live
            .get(pos * self.words + local / 64)
            .is_some_and(|w| w >> (local % 64) & 1 == 1)
    }
}

const FUNC: usize = usize::MAX;

/// `ops` is the whole body, ending with its final `end`; `locals` counts parameters too.
pub fn liveness(ops: &[Operator<'_>], locals: usize) -> Liveness {
    let n = ops.len();
    let words = locals.div_ceil(64).max(1);
    let (end_of, else_of) = matching(ops);
    let func_end = n.saturating_sub(1);
    let succ = successors(ops, &end_of, &else_of, func_end);

    let mut live = vec![0u64; n * words];
    let mut acc = vec![0u64; words];
    loop {
        let mut changed = false;
        for i in (0..n).rev() {
            acc.fill(0);
            for &s in &succ.targets[succ.start[i]..succ.start[i + 1]] {
                let s = s as usize;
                for (a, l) in acc.iter_mut().zip(&live[s * words..(s + 1) * words]) {
                    *a |= l;
                }
            }
            match ops[i] {
                Operator::LocalGet { local_index } => set(&mut acc, local_index as usize, true),
                Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => {
                    set(&mut acc, local_index as usize, false)
                }
                _ => {}
            }
            let here = &mut live[i * words..(i + 1) * words];
            if here != acc.as_slice() {
                here.copy_from_slice(&acc);
                changed = true;
            }
        }
        if !changed {
            return Liveness { words, live };
        }
    }
}

/// Per local: the operator index after which it is never touched again, widened to the end of
/// every loop it appears in (a back edge may reach an earlier appearance). A reference local
/// past this point is *spent*: dead, and possibly still holding a value, which a resume point
/// clears so the capture can proceed. Locals dead only because they are not yet assigned hold
/// null already and need no clearing, which keeps those clears few.
pub fn spent_after(ops: &[Operator<'_>], locals: usize) -> Vec<usize> {
    let (end_of, _) = matching(ops);
    let loops: Vec<(usize, usize)> = ops
        .iter()
        .enumerate()
        .filter(|(i, op)| matches!(op, Operator::Loop { .. }) && end_of[*i] != FUNC)
        .map(|(i, _)| (i, end_of[i]))
        .collect();
    let mut last = vec![0usize; locals];
    for (pos, op) in ops.iter().enumerate() {
        if let Operator::LocalGet { local_index }
        | Operator::LocalSet { local_index }
        | Operator::LocalTee { local_index } = op
        {
            if let Some(l) = last.get_mut(*local_index as usize) {
                *l = pos;
                for &(s, e) in &loops {
                    if s <= pos && pos <= e {
                        *l = (*l).max(e);
                    }
                }
            }
        }
    }
    last
}

fn set(bits: &mut [u64], local: usize, on: bool) {
    if let Some(w) = bits.get_mut(local / 64) {
        if on {
            *w |= 1 << (local % 64);
        } else {
            *w &= !(1 << (local % 64));
        }
    }
}

/// For each block-like opener: the index of its `end` (and of its `else`, for an `if`).
fn matching(ops: &[Operator<'_>]) -> (Vec<usize>, Vec<usize>) {
    let mut end_of = vec![FUNC; ops.len()];
    let mut else_of = vec![FUNC; ops.len()];
    let mut open: Vec<usize> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. } => open.push(i),
            Operator::Else => {
                if let Some(&o) = open.last() {
                    else_of[o] = i;
                }
            }
            Operator::End => {
                if let Some(o) = open.pop() {
                    end_of[o] = i;
                }
            }
            _ => {}
        }
    }
    (end_of, else_of)
}

/// Successor lists in compressed form: those of operator `i` are
/// `targets[start[i]..start[i + 1]]`.
struct Successors {
    start: Vec<usize>,
    targets: Vec<u32>,
}

fn successors(
    ops: &[Operator<'_>],
    end_of: &[usize],
    else_of: &[usize],
    func_end: usize,
) -> Successors {
    let n = ops.len();
    let mut start = Vec::with_capacity(n + 1);
    let mut targets: Vec<u32> = Vec::with_capacity(n + n / 4);
    // Enclosing constructs (FUNC for the body), and the catch targets of open `try_table`s.
    let mut open: Vec<usize> = vec![FUNC];
    let mut catches: Vec<Vec<u32>> = Vec::new();
    // A branch to a loop goes to its top; to anything else, to its end.
    let target = |open: &[usize], depth: u32| -> Option<u32> {
        let o = *open.get(open.len().checked_sub(1 + depth as usize)?)?;
        let t = if o == FUNC {
            func_end
        } else if matches!(ops[o], Operator::Loop { .. }) {
            o
        } else {
            end_of[o]
        };
        (t < n).then_some(t as u32)
    };
    for (i, op) in ops.iter().enumerate() {
        start.push(targets.len());
        let next = (i + 1 < n).then_some(i as u32 + 1);
        let mut may_throw = false;
        match op {
            Operator::Block { .. } | Operator::Loop { .. } => {
                targets.extend(next);
                open.push(i);
            }
            Operator::TryTable { try_table } => {
                targets.extend(next);
                // Catch labels count from outside the try_table.
                let here: Vec<u32> = try_table
                    .catches
                    .iter()
                    .filter_map(|c| {
                        let label = match *c {
                            wasmparser::Catch::One { label, .. }
                            | wasmparser::Catch::OneRef { label, .. }
                            | wasmparser::Catch::All { label }
                            | wasmparser::Catch::AllRef { label } => label,
                        };
                        target(&open, label)
                    })
                    .collect();
                catches.push(here);
                open.push(i);
            }
            Operator::If { .. } => {
                targets.extend(next);
                let other = if else_of[i] != FUNC {
                    else_of[i] + 1
                } else {
                    end_of[i]
                };
                if other < n {
                    targets.push(other as u32);
                }
                open.push(i);
            }
            Operator::Else => {
                if let Some(&o) = open.last() {
                    if o != FUNC && end_of[o] < n {
                        targets.push(end_of[o] as u32);
                    }
                }
            }
            Operator::End => {
                if let Some(o) = open.pop() {
                    if o != FUNC && matches!(ops[o], Operator::TryTable { .. }) {
                        catches.pop();
                    }
                }
                targets.extend(next);
            }
            Operator::Br { relative_depth } => targets.extend(target(&open, *relative_depth)),
            Operator::BrIf { relative_depth }
            | Operator::BrOnNull { relative_depth }
            | Operator::BrOnNonNull { relative_depth }
            | Operator::BrOnCast { relative_depth, .. }
            | Operator::BrOnCastFail { relative_depth, .. } => {
                targets.extend(next);
                targets.extend(target(&open, *relative_depth));
            }
            Operator::BrTable { targets: table } => {
                for t in table.targets().flatten() {
                    targets.extend(target(&open, t));
                }
                targets.extend(target(&open, table.default()));
            }
            Operator::Return
            | Operator::Unreachable
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. } => {}
            Operator::Throw { .. } | Operator::ThrowRef => may_throw = true,
            Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::CallRef { .. } => {
                targets.extend(next);
                may_throw = true;
            }
            _ => targets.extend(next),
        }
        if may_throw {
            for c in &catches {
                targets.extend(c.iter().copied());
            }
        }
    }
    start.push(targets.len());
    Successors { start, targets }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ops::ops_of;

    fn position(ops: &[Operator<'_>], pred: impl Fn(&Operator<'_>) -> bool) -> usize {
        ops.iter().position(pred).expect("operator present")
    }

    #[test]
    fn a_local_is_dead_after_its_last_read_and_before_it_is_overwritten() {
        // local 1 ($t) is read before the call and written again after it: dead across it.
        let (ops, locals) = ops_of(
            r#"(module (func $f)
                 (func (param $p i32) (local $t i32) (local $u i32)
                   (local.set $t (i32.const 1))
                   (drop (local.get $t))
                   (call $f)
                   (local.set $t (local.get $p))
                   (local.set $u (local.get $t))
                   (drop (local.get $u))))"#,
        );
        let live = liveness(&ops, locals + 1);
        let call = position(&ops, |o| matches!(o, Operator::Call { .. }));
        assert!(
            live.is_live(0, call),
            "the parameter is read after the call"
        );
        assert!(!live.is_live(1, call), "overwritten before its next read");
        assert!(!live.is_live(2, call), "not yet written");
    }

    #[test]
    fn loops_carry_values_to_their_top_and_catches_receive_them() {
        let (ops, locals) = ops_of(
            r#"(module (tag $e) (func $f)
                 (func (local $i i32) (local $tmp i32) (local $c i32)
                   (block $caught
                     (try_table (catch $e $caught)
                       (loop $l
                         (local.set $tmp (i32.add (local.get $i) (i32.const 1)))
                         (local.set $i (local.get $tmp))
                         (call $f)
                         (br_if $l (i32.lt_u (local.get $i) (i32.const 9))))))
                   (drop (local.get $c))))"#,
        );
        let live = liveness(&ops, locals);
        let top = position(&ops, |o| matches!(o, Operator::Loop { .. }));
        let call = position(&ops, |o| matches!(o, Operator::Call { .. }));
        assert!(live.is_live(0, top), "the counter crosses the back edge");
        assert!(
            !live.is_live(1, top),
            "the temporary is rewritten every iteration"
        );
        assert!(!live.is_live(1, call));
        assert!(live.is_live(0, call));
        assert!(
            live.is_live(2, call),
            "read after the catch, which the call may reach by throwing"
        );
    }

    #[test]
    fn a_read_on_one_arm_keeps_a_local_live_before_the_if() {
        let (ops, locals) = ops_of(
            r#"(module (func $f)
                 (func (param $p i32) (local $x i32)
                   (call $f)
                   (if (local.get $p)
                     (then (local.set $x (i32.const 5)))
                     (else (drop (local.get $x))))
                   (br 0)
                   (drop (local.get $x))))"#,
        );
        let live = liveness(&ops, locals + 1);
        let call = position(&ops, |o| matches!(o, Operator::Call { .. }));
        assert!(live.is_live(0, call));
        assert!(
            live.is_live(1, call),
            "the else arm reads its initial value"
        );
        let br = position(&ops, |o| matches!(o, Operator::Br { .. }));
        assert!(!live.is_live(1, br), "code after the branch is unreachable");
    }
}
