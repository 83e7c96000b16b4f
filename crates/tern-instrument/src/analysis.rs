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
}

pub struct Analysis {
    /// Over all functions, imports first: a call to it may unwind.
    pub unwinds: Vec<bool>,
    /// Per signature id: an indirect call with it may unwind.
    pub sig_unwinds: Vec<bool>,
    /// Per defined function: it is on a call cycle, so it polls on entry.
    pub entry_poll: Vec<bool>,
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
        let on_cycle = cyclic_nodes(&edges);
        let mut unwinds = vec![false; self.node_count()];
        for (f, captures) in self.import_captures.iter().enumerate() {
            unwinds[f] = *captures;
        }
        let mut entry_poll = vec![false; self.scans.len()];
        for (i, scan) in self.scans.iter().enumerate() {
            let node = self.imported as usize + i;
            entry_poll[i] = on_cycle[node];
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
        Analysis {
            unwinds,
            sig_unwinds,
            entry_poll,
        }
    }
}

/// Nodes that lie on a cycle (a strongly connected component with more than one node, or a
/// node that calls itself). Iterative Tarjan: modules have call chains far deeper than the
/// native stack would allow for a recursive walk.
fn cyclic_nodes(edges: &[Vec<u32>]) -> Vec<bool> {
    const UNSEEN: u32 = u32::MAX;
    let n = edges.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut cyclic = vec![false; n];
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
                    members.push(w);
                    if w == v {
                        break;
                    }
                }
                if members.len() > 1 {
                    for w in members {
                        cyclic[w] = true;
                    }
                }
            }
        }
    }
    cyclic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cycles_and_self_calls() {
        let edges = vec![vec![1], vec![2], vec![1], vec![3], vec![]];
        assert_eq!(cyclic_nodes(&edges), vec![false, true, true, true, false]);
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
        };
        let a = g.analyse();
        assert_eq!(a.unwinds, vec![true, true, true, true]);
        assert_eq!(a.sig_unwinds, vec![true, false]);
        assert_eq!(a.entry_poll, vec![false, false, false]);
    }
}
