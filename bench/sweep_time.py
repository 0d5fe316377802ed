"""Time per full-batch sweep of the paper's two nets: bpfast vs bpfast.reference (NumPy float64).

    python bench/sweep_time.py [--repeats 7]

W1: symmetry, 6-2-1, all 64 patterns. W2: family trees, (24->6, 12->6)->12->6->24, 100 cases
(random one-hot person/relation pairs and sparse targets of the paper's shapes: timing does not
depend on the values). Both tools train the same net from the same weights; before timing, the
script checks that bpfast's errors over 20 sweeps match the reference, and refuses to report
otherwise. Runs alternate (bpfast, reference, bpfast, ...) and medians are reported with min-max.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

import bpfast
from bpfast import Layer, reference


def symmetry_case():
    X, T = bpfast.datasets.symmetry()
    return bpfast.Network([6, 2, 1], seed=1, dtype="float32"), X, T


def family_trees_case():
    net = bpfast.Network(
        inputs={"person": 24, "relation": 12},
        layers=[Layer("person_code", 6, ["person"]), Layer("relation_code", 6, ["relation"]),
                Layer("central", 12, ["person_code", "relation_code"]),
                Layer("decode", 6, ["central"]), Layer("output", 24, ["decode"])],
        seed=1, dtype="float32")
    rng = np.random.default_rng(0)
    X = np.zeros((100, 36))
    X[np.arange(100), rng.integers(0, 24, 100)] = 1
    X[np.arange(100), 24 + rng.integers(0, 12, 100)] = 1
    T = (rng.uniform(size=(100, 24)) < 0.06).astype(float)
    return net, X, T


def bpfast_sweeps(net, X, T, n_sweeps):
    start = time.perf_counter()
    result = net.fit(X, T, lr=0.1, momentum=0.9, n_sweeps=n_sweeps, n_threads=1)
    elapsed = time.perf_counter() - start
    return elapsed / n_sweeps, result.errors


def reference_sweeps(net, X, T, n_sweeps):
    params = net.params.astype(np.float64)
    velocity = np.zeros_like(params)
    start = time.perf_counter()
    errors = reference.train(net.topology, params, velocity, X, T,
                             [(n_sweeps, 0.1, 0.9, 0.0, 0)], batch_size=len(X))[0]
    return (time.perf_counter() - start) / n_sweeps, errors


def measure(name, make, repeats, fast_sweeps, ref_sweeps):
    net, X, T = make()
    _, fast_errors = bpfast_sweeps(make()[0], X, T, 20)
    _, ref_errors = reference_sweeps(net, X, T, 20)
    if not np.allclose(fast_errors, ref_errors, rtol=1e-4):
        raise SystemExit(f"{name}: bpfast disagrees with the reference; not timing it\n"
                         f"{fast_errors}\n{ref_errors}")
    fast, ref = [], []
    bpfast_sweeps(make()[0], X, T, fast_sweeps)  # warm-up
    for _ in range(repeats):
        fast.append(bpfast_sweeps(make()[0], X, T, fast_sweeps)[0])
        ref.append(reference_sweeps(net, X, T, ref_sweeps)[0])
    return fast, ref


def fmt(times):
    us = [t * 1e6 for t in times]
    return f"{statistics.median(us):.2f} ({min(us):.2f}-{max(us):.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    info = bpfast.build_info()
    print(f"bpfast {bpfast.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}, simd {info['simd']}, "
          f"OpenMP {info['openmp']}; 1 thread, float32 (reference: float64)\n")
    print("| workload | bpfast µs/sweep | reference µs/sweep | speed-up |")
    print("|---|---|---|---|")
    for name, make, fast_n, ref_n in [("W1 symmetry 6-2-1, 64 cases", symmetry_case, 20000, 500),
                                      ("W2 family trees, 100 cases", family_trees_case, 5000, 300)]:
        fast, ref = measure(name, make, args.repeats, fast_n, ref_n)
        ratio = statistics.median(ref) / statistics.median(fast)
        print(f"| {name} | {fmt(fast)} | {fmt(ref)} | {ratio:.0f}x |")


if __name__ == "__main__":
    main()
