"""W7: a recurrent net trained by back-propagation through time, bpfast against NumPy and PyTorch.

    python bench/recurrent.py               # every kernel variant this CPU runs, 1 thread
    python bench/recurrent.py --smoke       # a few sweeps: checks the script and every tool
    python bench/compare.py --workloads W7  # the same, as part of the comparison script

The workload (issue 11 names it W6; W6 here is the family-trees population of
bench/populations.py): PDP ch. 8's sequence-completion net, 5 inputs, 30 hidden and 3 output
logistic units, T = 6 steps, the 20 training sequences of `bpfast run sequences` (no targets at
steps 1-2), full-batch sweeps of summed squared error, eps 0.005, alpha 0.9, float32; µs per
sweep (forward through the 6 steps, back-propagation through time, the momentum update).

Tools: "bpfast <isa>" (a RecurrentNetwork: the unrolled net with tied weights, Fig. 5);
"reference", bpfast.reference.recurrent_loss_gradient and reference.update (NumPy float64, the
oracle: the NumPy reference of the issue's target); "numpy", the same loop over time steps in
float32 with in-place ufuncs; "torch", PyTorch eager, an explicit loop over steps with sigmoid units,
autograd and torch.optim.SGD(momentum) (the paper's update), as a user would write it.

Before timing, every tool trains 30 sweeps from the same weights, and its weights must match the
reference's within float32 tolerance, or it is not reported. Runs are interleaved and repeated; the
table gives medians (min-max) and, in one run, each tool's time over bpfast's. The targets of
issue 11 (>= 20x the NumPy reference, >= 50x PyTorch, 1 thread) are checked per variant.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import bpfast
from bpfast import _core, reference

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run from anywhere
from compare import cpu_name

LR, MOMENTUM, SHAPE = 0.005, 0.9, (5, 30, 3, 6)
VERIFY_SWEEPS = 30
TARGETS = {"reference": 20, "torch": 50}  # issue 11: bpfast at least this many times faster


def data():
    d = bpfast.datasets.sequences()
    train, _ = d.split()
    return d.X[train], d.T[train]


def start():
    """The starting weights every tool copies: RecurrentNetwork seed 0, U(+-1)."""
    return bpfast.RecurrentNetwork(*SHAPE, seed=0, init_range=1.0)


class Bpfast:
    def __init__(self, isa):
        self.isa, self.name = isa, f"bpfast {isa}"

    def setup(self, X, T):
        self.X, self.T = X, T
        self.net = start()

    def run(self, n_sweeps):
        before = bpfast.build_info()["simd"]
        _core.set_isa(self.isa)
        try:
            self.net.fit(self.X, self.T, lr=LR, momentum=MOMENTUM, n_sweeps=n_sweeps,
                         n_threads=1, evaluate=False)
        finally:
            _core.set_isa(before)

    def matrices(self):
        return self.net.matrices()


def logistic_in_place(a):
    """1 / (1 + exp(-a)), in a's own buffer."""
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1
    return np.reciprocal(a, out=a)


class LoopOverSteps:
    """BPTT as a loop over steps in NumPy (the reference in float64, "numpy" in float32)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.name = "reference" if dtype == np.float64 else "numpy"

    def setup(self, X, T):
        self.X = X.astype(self.dtype)
        self.trained = ~np.isnan(T)
        self.T = np.where(self.trained, T, 0).astype(self.dtype)
        self.W = {k: v.astype(self.dtype) for k, v in start().matrices().items()}
        self.V = {k: np.zeros_like(v) for k, v in self.W.items()}

    def run(self, n_sweeps):
        if self.dtype == np.float64:
            nan_T = np.where(self.trained, self.T, np.nan)
            for _ in range(n_sweeps):
                _, grads, _ = reference.recurrent_loss_gradient(self.W, self.X, nan_T)
                for k in self.W:
                    reference.update(self.W[k].reshape(-1), self.V[k].reshape(-1),
                                     grads[k].reshape(-1), lr=LR, momentum=MOMENTUM)
            return
        for _ in range(n_sweeps):
            self._sweep()

    def _sweep(self):
        W, X, T, mask = self.W, self.X, self.T, self.trained
        n, steps = X.shape[0], X.shape[1]
        hs = [np.zeros((n, W["input"].shape[0]), self.dtype)]
        ys = []
        for t in range(steps):
            a = X[:, t] @ W["input"].T
            a += hs[-1] @ W["recurrent"].T
            a += W["hidden_bias"]
            hs.append(logistic_in_place(a))
            o = a @ W["output"].T
            o += W["output_bias"]
            ys.append(logistic_in_place(o))
        grads = {k: np.zeros_like(v) for k, v in W.items()}
        dh_next = np.zeros_like(hs[0])
        for t in range(steps, 0, -1):
            y = ys[t - 1]
            d = (y - T[:, t - 1]) * mask[:, t - 1]
            d *= y * (1 - y)
            grads["output"] += d.T @ hs[t]
            grads["output_bias"] += d.sum(0)
            dh = d @ W["output"]
            dh += dh_next
            h = hs[t]
            dh *= h * (1 - h)
            grads["input"] += dh.T @ X[:, t - 1]
            grads["recurrent"] += dh.T @ hs[t - 1]
            grads["hidden_bias"] += dh.sum(0)
            dh_next = dh @ W["recurrent"]
        for k in W:
            self.V[k] *= MOMENTUM
            self.V[k] -= LR * grads[k]
            W[k] += self.V[k]

    def matrices(self):
        return self.W


class Torch:
    name = "torch"

    def available(self):
        try:
            import torch  # noqa: F401
        except ImportError:
            return False
        return True

    def setup(self, X, T):
        import torch
        torch.set_num_threads(1)
        self.torch = torch
        self.X = torch.tensor(X, dtype=torch.float32)
        mask = ~np.isnan(T)
        self.T = torch.tensor(np.where(mask, T, 0), dtype=torch.float32)
        self.mask = torch.tensor(mask, dtype=torch.float32)
        self.W = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True)
                  for k, v in start().matrices().items()}
        # lr on the summed error, momentum without dampening: the paper's eq. 9
        self.opt = torch.optim.SGD(list(self.W.values()), lr=LR, momentum=MOMENTUM)

    def run(self, n_sweeps):
        torch, W = self.torch, self.W
        for _ in range(n_sweeps):
            self.opt.zero_grad()
            h = torch.zeros(self.X.shape[0], W["input"].shape[0])
            error = 0
            for t in range(self.X.shape[1]):
                h = torch.sigmoid(self.X[:, t] @ W["input"].T + h @ W["recurrent"].T
                                  + W["hidden_bias"])
                y = torch.sigmoid(h @ W["output"].T + W["output_bias"])
                error = error + 0.5 * (((y - self.T[:, t]) * self.mask[:, t]) ** 2).sum()
            error.backward()
            self.opt.step()

    def matrices(self):
        return {k: v.detach().numpy() for k, v in self.W.items()}


def verify(tool, X, T, expected):
    tool.setup(X, T)
    tool.run(VERIFY_SWEEPS)
    got = tool.matrices()
    for k, want in expected.items():
        scale = float(np.max(np.abs(want)))
        # float32 over 30 sweeps of ~1,000 terms each: a few 1e-5 of the scale
        if not np.allclose(got[k], want, rtol=1e-3, atol=1e-3 * scale):
            return f"{k} differs from the reference by {np.max(np.abs(got[k] - want)):.3g}"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few sweeps, no timing claims")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--isa", nargs="+", default=["all"],
                        help="kernel variants (default: all this CPU runs)")
    args = parser.parse_args(argv)
    isas = _core.available_isas() if args.isa == ["all"] else args.isa
    X, T = data()
    tools = [Bpfast(isa) for isa in isas] + [LoopOverSteps(np.float64), LoopOverSteps(np.float32)]
    torch = Torch()
    if torch.available():
        tools.append(torch)
    status = 0
    oracle = LoopOverSteps(np.float64)
    oracle.setup(X, T)
    oracle.run(VERIFY_SWEEPS)
    expected = oracle.matrices()
    for tool in list(tools):
        problem = verify(tool, X, T, expected)
        if problem:
            print(f"W7: {tool.name} DISAGREES with the reference ({problem}); not reported",
                  file=sys.stderr)
            tools.remove(tool)
            status = 1
    # sweeps per timed run: about 0.1 s each (bpfast's sweeps take tens of microseconds)
    sweeps = {"reference": 100, "numpy": 200, "torch": 50}
    repeats = 2 if args.smoke else args.repeats
    times = {tool.name: [] for tool in tools}
    for tool in tools:
        tool.setup(X, T)
        tool.run(2)  # warm up
    for _ in range(repeats):
        for tool in tools:
            n = 5 if args.smoke else sweeps.get(tool.name, 2000)
            started = time.perf_counter()
            tool.run(n)
            times[tool.name].append((time.perf_counter() - started) / n * 1e6)
    print("### W7: sequence completion 5-30-3, T = 6, 20 sequences, full batch, 1 thread\n")
    print(f"{cpu_name()}; µs per sweep, medians of {repeats} interleaved runs (min-max); float32, "
          "the reference float64\n")
    medians = {name: statistics.median(v) for name, v in times.items()}
    others = [t.name for t in tools if not isinstance(t, Bpfast)]
    print("| variant | bpfast | " + " | ".join(others) + " | " +
          " | ".join(f"vs {o}" for o in others) + " | targets |")
    print("|" + "---|" * (3 + 2 * len(others)))
    base = medians.get("bpfast baseline")
    for tool in [t for t in tools if isinstance(t, Bpfast)]:
        mine = medians[tool.name]
        ratios = {o: medians[o] / mine for o in others}
        misses = [f"{o} {ratios[o]:.3g}× < {goal}×" for o, goal in TARGETS.items()
                  if o in ratios and ratios[o] < goal]
        cells = [f"{medians[n]:.1f} ({min(times[n]):.1f}–{max(times[n]):.1f})"
                 for n in [tool.name] + others]
        print(f"| {tool.isa} | " + " | ".join(cells) + " | " +
              " | ".join(f"{ratios[o]:.1f}×" for o in others) + " | " +
              ("- (smoke)" if args.smoke else "met" if not misses else
               "MISSED: " + "; ".join(misses)) + " |")
        if base is not None and tool.isa != "baseline" and mine > base and not args.smoke:
            print(f"BUG: {tool.name} is slower than the baseline variant ({mine:.1f} vs "
                  f"{base:.1f} µs)", file=sys.stderr)
            status = 2
    print()
    return status


if __name__ == "__main__":
    sys.exit(main())
