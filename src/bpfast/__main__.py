"""`python -m bpfast`: the symmetry experiment of Nature Fig. 1 with the paper's settings."""

from __future__ import annotations

import sys
import time

import numpy as np

from . import symmetry

MAX_DEMO_SEEDS = 10


def _row(values) -> str:
    return " ".join(f"{v:+6.1f}" for v in values)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        print("usage: bpfast   (runs the symmetry demo; more commands are coming)", file=sys.stderr)
        return 2
    print("Symmetry (Rumelhart, Hinton & Williams 1986, Fig. 1): 6-2-1 logistic net, 64 patterns,")
    print("eps=0.1, alpha=0.9, weights U(+-0.3), full-batch sweeps, stop when every output is "
          "within 0.2 of its target.")
    # About one seed in ten sits on the E = 4 plateau (the paper's replications agree); the default
    # seed 0 is one of them, so the demo says so and goes on to the next seed that solves.
    for seed in range(MAX_DEMO_SEEDS):
        started = time.perf_counter()
        net, result = symmetry.run(seed=seed)
        elapsed = time.perf_counter() - started
        if result.solved:
            status = f"solved in {result.n_sweeps} sweeps"
        else:
            status = f"not solved in {result.n_sweeps} sweeps"
            if abs(result.final_error - 4.0) < 0.1:
                status += " (on the E = 4 plateau: every pattern reads 'not symmetric')"
        print(f"seed {seed}: {status}; final E = {result.final_error:.3f}; "
              f"{elapsed * 1e6 / max(result.n_sweeps, 1):.1f} us per sweep ({elapsed:.2f} s); "
              f"every output on the right side of 0.5: {symmetry.right_side_of_half(net)}")
        if result.solved:
            break
    s = symmetry.describe_solution(net)
    print(f"paper:  solved in {symmetry.PAPER_SWEEPS} sweeps (one run); replications: ~90% of seeds "
          "solve, median ~2,200-2,700 sweeps")
    print("                     input weights (x1..x6)              bias  -> output")
    for h in range(2):
        print(f"ours   hidden {h + 1}: {_row(s.hidden_weights[h])}   {s.hidden_bias[h]:+5.1f}  "
              f"{s.output_weights[h]:+6.1f}")
    paper = np.array(symmetry.PAPER_HIDDEN_WEIGHTS)
    for h, sign in enumerate((1, -1)):
        print(f"paper  hidden {h + 1}: {_row(sign * paper)}   {symmetry.PAPER_HIDDEN_BIAS:+5.1f}  "
              f"{symmetry.PAPER_HIDDEN_TO_OUTPUT:+6.1f}")
    print(f"output bias: ours {s.output_bias:+.1f}, paper {symmetry.PAPER_OUTPUT_BIAS:+.1f}; "
          f"sorted magnitude ratios: ours 1 : {s.magnitude_ratios[0, 1]:.2f} : "
          f"{s.magnitude_ratios[0, 2]:.2f}, paper 1 : 2 : 4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
