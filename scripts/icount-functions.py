#!/usr/bin/env python3
"""Per-function instruction counts of a guest, plain and instrumented, from scripts/icount.sh.

icount-functions.py MAP CALLGRIND_OUT N

MAP has one line per compiled function, "side address length name" (side: plain or tern),
written by the overhead example's --function-map. CALLGRIND_OUT is callgrind's output for the
main thread of a run with both sides, dumped with --dump-instr=yes --dump-line=no
--compress-pos=no, so that every cost line starts with an absolute instruction address.
Prints the N functions with the most plain instructions and their instrumented counts.
"""
import bisect
import collections
import sys


def load_map(path):
    spans = []
    with open(path) as f:
        for line in f:
            side, addr, length, name = line.rstrip("\n").split(" ", 3)
            spans.append((int(addr), int(length), side, name))
    spans.sort()
    return spans, [s[0] for s in spans]


def count(path, spans, starts):
    """Self cost per (side, function): cost lines only, not the inclusive line after calls=."""
    per = collections.Counter()
    skip_next = False
    with open(path) as f:
        for line in f:
            if skip_next:
                skip_next = False
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            if not line.startswith("0x"):
                continue
            fields = line.split()
            if len(fields) < 2:
                continue
            addr = int(fields[0], 16)
            i = bisect.bisect_right(starts, addr) - 1
            if i < 0:
                continue
            start, length, side, name = spans[i]
            if addr < start + length:
                per[(side, name)] += int(fields[1])
    return per


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    spans, starts = load_map(sys.argv[1])
    per = count(sys.argv[2], spans, starts)
    n = int(sys.argv[3])
    total = {side: sum(v for (s, _), v in per.items() if s == side) for side in ("plain", "tern")}
    print(f"{'function':<32} {'plain':>14} {'tern':>14} {'ratio':>7} {'share':>6}")
    plain = sorted(((v, name) for (s, name), v in per.items() if s == "plain"), reverse=True)
    for v, name in plain[:n]:
        t = per[("tern", name)]
        print(f"{name[:32]:<32} {v:>14} {t:>14} {t / v:>7.3f} {v / total['plain']:>6.1%}")
    if total["plain"]:
        print(f"{'(all guest code)':<32} {total['plain']:>14} {total['tern']:>14} "
              f"{total['tern'] / total['plain']:>7.3f}")


if __name__ == "__main__":
    main()
