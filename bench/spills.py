"""The inner loops of the register tiles: FMAs (or multiplies), loads and stack accesses.

    gcc -O3 -fopenmp -ffp-contract=off -Icsrc -S csrc/kernels_avx2.c -o /tmp/avx2.s
    python bench/spills.py /tmp/avx2.s

For every tile function (tile_* and dots_*), the innermost loop with the most FMAs among those that
load no constants (the k loop of a broadcast tile, the lane loop of a dot tile; the unit function
after the loop loads its polynomial's constants) and the stack accesses in it: a tile that fits its
registers has none (it reloads nothing it spilled). Exits 1 if any has one. Used to choose and
check each variant's tile shape (csrc/kernels_<isa>.c).
"""

import argparse
import re
import sys

ARITH = re.compile(r"\b(vfmadd\w*|vfmla\w*|fmla|mulps|mulpd|fmul|vmulps|vmulpd)\b")
STACK = re.compile(r"\((%rsp|%rbp)[^)]*\)|\[sp[,\]]|\[x29[,\]]")
CONSTANT = re.compile(r"%rip|\.LC|:lo12:|div|cvt|\bcall\b|\bbl\b")
LOAD = re.compile(r"\b(vmovups|vmovaps|vbroadcastss|vbroadcastsd|movups|movaps|movss|movsd|ldr|ld1r|ldp|"
                  r"vmovupd|movupd|shufps|unpcklps)\b")


def loops(lines):
    """(function, first line, last line) of every backward jump's loop, in listing order."""
    labels = {}
    current = None
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Za-z_][\w.]*):", line)
        if m and not m.group(1).startswith(".L"):
            current = m.group(1)
        m = re.match(r"^(\.L\w+):", line)
        if m:
            labels[m.group(1)] = i
        m = re.match(r"^\s+(j\w+|b\.?\w*|cbnz|cbz)\s+(?:\S+,\s*)*(\.L\w+)", line)
        if m and m.group(2) in labels and labels[m.group(2)] < i:
            yield current, labels[m.group(2)], i


def innermost(lines):
    """(function, body) of the tile and dot functions' loops that hold no shorter loop: compared
    within each function only (a listing of every variant has tens of thousands of loops)."""
    by_function = {}
    for func, start, end in loops(lines):
        if re.match(r"(tile|dots)_", func or ""):
            by_function.setdefault(func, []).append((start, end))
    for func, spans in by_function.items():
        for start, end in spans:
            if not any(start < other < end and other_end - other < end - start
                       for other, other_end in spans):
                yield func, lines[start:end + 1]


def frame_functions(lines):
    """The functions that set up %rbp as a frame pointer: elsewhere GCC may use it as one more
    general register (a tile's B pointer, say), and an access through it is no stack access."""
    framed, current = set(), None
    for line in lines:
        m = re.match(r"^([A-Za-z_][\w.]*):", line)
        if m and not m.group(1).startswith(".L"):
            current = m.group(1)
        if re.match(r"^\s+movq?\s+%rsp,\s*%rbp\b", line):
            framed.add(current)
    return framed


def stack_access(line, framed):
    return bool(STACK.search(line)) and (framed or "%rbp" not in line or "%rsp" in line)


def main(path):
    with open(path) as listing:
        lines = listing.read().split("\n")
    framed = frame_functions(lines)
    best = {}
    for func, body in innermost(lines):
        if any(CONSTANT.search(l) for l in body):
            continue
        arith = sum(bool(ARITH.search(l)) for l in body)
        if arith > best.get(func, (0,))[0]:
            best[func] = (arith, sum(bool(LOAD.search(l)) for l in body),
                          sum(stack_access(l, func in framed) for l in body))
    for func, (arith, loads, stack) in sorted(best.items()):
        print(f"{func:48s} {arith:3d} FMA/mul {loads:3d} loads {stack:3d} stack")
    return 1 if not best or any(stack for _, _, stack in best.values()) else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("listing", help="an assembly listing (gcc -S) of a kernels_<isa>.c")
    sys.exit(main(parser.parse_args().listing))
