//! Call-graph analysis: which functions can reach a capture point, and which sit on a cycle.
//!
//! A function must be rewritten when a capture can start while it is on the stack: it polls
//! (it has a loop, or it is recursive), it calls a capturing import, or it calls — directly or
//! through a table — a function that must be rewritten. Indirect calls go through one node per
//! signature, so the graph stays linear in the size of the module.

/// What one defined function does, as seen by a quick scan of its body.
#[derive(Debug, Default, Clone)]
pub struct FuncScan {
    pub direct_calls: Vec<u32>,
    /// Signature ids (see [`Graph`]) of `call_indirect` / `call_ref` instructions.
    pub indirect_sigs: Vec<u32>,
    pub has_loop: bool,
    /// It has a `try_table` with a catch clause: an exception can land in it.
    pub catches: bool,
}

pub struct Graph {
    pub imported: u32,
    /// Signature id of every function (imports first).
    pub func_sig: Vec<u32>,
    pub sig_count: u32,
    /// Whether an import may start a capture.
    pub import_captures: Vec<bool>,
    pub scans: Vec<FuncScan>,
    /// Functions that may be called through a table (element segments, `ref.func`).
    pub address_taken: Vec<bool>,
    /// Functions the host may call: exports and the start function.
    pub external: Vec<bool>,
}

pub struct Analysis {
    /// Over all functions, imports first: a call to it may unwind.
    pub unwinds: Vec<bool>,
    /// Per signature id: an indirect call with it may unwind.
    pub sig_unwinds: Vec<bool>,
    /// Per defined function: it is on a call cycle, so it polls on entry.
    pub entry_poll: Vec<bool>,
    /// Over all functions: a recursive function that neither polls nor checks for a rewind on
    /// entry. Its callers in its own cycle poll after calling it instead, and a rewind enters
    /// its rewind entry through its trampoline (see `direct_rewind`).
    pub lean: Vec<bool>,
    /// Over all functions: a rewritten function entered only by direct calls (not exported, not
    /// the start function, not in a table) that does not poll on entry. Its running form does
    /// not check for a rewind on entry; its callers' rewinding forms call it through a
    /// trampoline that does (see `module::trampoline_body`).
    pub direct_rewind: Vec<bool>,
    /// Over all functions: the strongly connected component of the call graph it lies in. A
    /// call to a function of the caller's own component may recurse.
    pub component: Vec<u32>,
}

impl Graph {
    fn node_count(&self) -> usize {
        self.func_sig.len() + self.sig_count as usize
    }

    /// Successors in the call graph: functions call functions and signature nodes; a signature
    /// node "calls" every address-taken function of that signature.
    fn edges(&self) -> Vec<Vec<u32>> {
        let funcs = self.func_sig.len() as u32;
        let mut edges = vec![Vec::new(); self.node_count()];
        for (i, scan) in self.scans.iter().enumerate() {
            let node = self.imported as usize + i;
            edges[node].extend(scan.direct_calls.iter().copied());
            edges[node].extend(scan.indirect_sigs.iter().map(|s| funcs + s));
        }
        for (f, taken) in self.address_taken.iter().enumerate() {
            if *taken {
                edges[(funcs + self.func_sig[f]) as usize].push(f as u32);
            }
        }
        for e in &mut edges {
            e.sort_unstable();
            e.dedup();
        }
        edges
    }

    pub fn analyse(&self) -> Analysis {
        let funcs = self.func_sig.len();
        let edges = self.edges();
        let (on_cycle, component) = components(&edges);
        let mut unwinds = vec![false; self.node_count()];
        for (f, captures) in self.import_captures.iter().enumerate() {
            unwinds[f] = *captures;
        }
        let mut entry_poll = vec![false; self.scans.len()];
        let mut lean = vec![false; funcs];
        for (i, scan) in self.scans.iter().enumerate() {
            let node = self.imported as usize + i;
            // Every cycle of calls must pass a safe point. A lean function's callers in its
            // cycle poll when it returns; a descent without returns is bounded by the stack.
            // An exception skips those polls, so a function where one can land keeps its entry
            // poll; so do functions entered other than by a direct call (the host, a table),
            // whose callers cannot enter their rewind entries directly.
            lean[node] = on_cycle[node]
                && !scan.catches
                && !self.address_taken.get(node).copied().unwrap_or(true)
                && !self.external.get(node).copied().unwrap_or(true);
            entry_poll[i] = on_cycle[node] && !lean[node];
            unwinds[node] = scan.has_loop || on_cycle[node];
        }
        // Propagate "may unwind" from callees to callers until nothing changes.
        let mut callers = vec![Vec::new(); edges.len()];
        for (from, tos) in edges.iter().enumerate() {
            for &to in tos {
                callers[to as usize].push(from as u32);
            }
        }
        let mut work: Vec<u32> = (0..edges.len() as u32)
            .filter(|&n| unwinds[n as usize])
            .collect();
        while let Some(n) = work.pop() {
            for &c in &callers[n as usize] {
                if !unwinds[c as usize] {
                    unwinds[c as usize] = true;
                    work.push(c);
                }
            }
        }
        let sig_unwinds = unwinds[funcs..].to_vec();
        unwinds.truncate(funcs);
        let mut component = component;
        component.truncate(funcs);
        let direct_rewind = (0..funcs)
            .map(|f| {
                let defined = f.checked_sub(self.imported as usize);
                defined.is_some_and(|i| unwinds[f] && !entry_poll[i])
                    && !self.address_taken.get(f).copied().unwrap_or(true)
                    && !self.external.get(f).copied().unwrap_or(true)
            })
            .collect();
        Analysis {
            unwinds,
            sig_unwinds,
            entry_poll,
            lean,
            direct_rewind,
            component,
        }
    }
}

/// Which nodes lie on a cycle (a strongly connected component with more than one node, or a
/// node that calls itself), and each node's component. Iterative Tarjan: modules have call
/// chains far deeper than the native stack would allow for a recursive walk.
fn components(edges: &[Vec<u32>]) -> (Vec<bool>, Vec<u32>) {
    const UNSEEN: u32 = u32::MAX;
    let n = edges.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut cyclic = vec![false; n];
    let mut component = vec![0u32; n];
    let mut components = 0u32;
    let mut next = 0u32;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        // (node, position in its edge list)
        let mut dfs: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = dfs.last_mut() {
            if let Some(&w) = edges[v].get(*pos) {
                *pos += 1;
                let w = w as usize;
                if w == v {
                    cyclic[v] = true;
                }
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    dfs.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            dfs.pop();
            if let Some(&(parent, _)) = dfs.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut members = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component[w] = components;
                    members.push(w);
                    if w == v {
                        break;
                    }
                }
                components += 1;
                if members.len() > 1 {
                    for w in members {
                        cyclic[w] = true;
                    }
                }
            }
        }
    }
    (cyclic, component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cycles_and_self_calls() {
        let edges = vec![vec![1], vec![2], vec![1], vec![3], vec![]];
        let (cyclic, component) = components(&edges);
        assert_eq!(cyclic, vec![false, true, true, true, false]);
        assert_eq!(component[1], component[2]);
        let mut distinct = vec![component[0], component[1], component[3], component[4]];
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn unwinding_propagates_through_tables() {
        // f0 import (captures), f1 calls f0, f2 calls indirectly sig 0, f3 is address-taken sig 0 and calls f1.
        let g = Graph {
            imported: 1,
            func_sig: vec![1, 1, 1, 0],
            sig_count: 2,
            import_captures: vec![true],
            scans: vec![
                FuncScan {
                    direct_calls: vec![0],
                    ..Default::default()
                },
                FuncScan {
                    indirect_sigs: vec![0],
                    ..Default::default()
                },
                FuncScan {
                    direct_calls: vec![1],
                    ..Default::default()
                },
            ],
            address_taken: vec![false, false, false, true],
            external: vec![false; 4],
        };
        let a = g.analyse();
        assert_eq!(a.unwinds, vec![true, true, true, true]);
        assert_eq!(a.sig_unwinds, vec![true, false]);
        assert_eq!(a.entry_poll, vec![false, false, false]);
        assert_eq!(a.lean, vec![false; 4]);
    }

    #[test]
    fn recursive_functions_are_lean_unless_entered_otherwise_or_catching() {
        // f0 calls itself; f1 and f2 call each other; f3 calls itself but is exported; f4
        // calls itself but has a catch; f5 calls itself but is address-taken; f6 calls f0.
        let scan = |calls: Vec<u32>, catches: bool| FuncScan {
            direct_calls: calls,
            catches,
            ..Default::default()
        };
        let g = Graph {
            imported: 0,
            func_sig: vec![0; 7],
            sig_count: 1,
            import_captures: vec![],
            scans: vec![
                scan(vec![0], false),
                scan(vec![2], false),
                scan(vec![1], false),
                scan(vec![3], false),
                scan(vec![4], true),
                scan(vec![5], false),
                scan(vec![0], false),
            ],
            address_taken: vec![false, false, false, false, false, true, false],
            external: vec![false, false, false, true, false, false, false],
        };
        let a = g.analyse();
        assert_eq!(a.lean, vec![true, true, true, false, false, false, false]);
        assert_eq!(
            a.entry_poll,
            vec![false, false, false, true, true, true, false]
        );
        assert_eq!(a.component[1], a.component[2]);
        assert_ne!(a.component[0], a.component[6]);
    }
}
