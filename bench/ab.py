"""Paired A/B of two builds of bpfast in one process: is a kernel change faster, and by how much?

    git stash && python setup.py build_ext --inplace && cp -r src/bpfast /tmp/before
    git stash pop && python setup.py build_ext --inplace && cp -r src/bpfast /tmp/after
    python bench/ab.py /tmp/before /tmp/after --workloads S digits W3 --isa all --threads 1 2

Each argument is a directory holding a built bpfast package (or the package itself). Both load
side by side under other names (the package imports itself only relatively), so every round
times A then B, or B then A, in the same process on the same data: a slow minute of a shared
machine slows both, and the ratio B/A of one round cancels it. On the 2-core VMs of these
sessions a build's own speed swings by 10-25% within the hour, so separate runs of each build
cannot resolve 5%; a build paired against itself here gave median ratios of 0.995-1.005, with
quartiles within 2% (session 20, 10 rounds). Ratios of a few percent on a variant the change does
not touch still happen: compare with such a control. Reported: each build's median seconds and
the median (quartiles) of the paired ratios; below 1 means B is faster. Before timing, one run of each must give the same weights bit
for bit (a speed change must not change results), else the workload is reported as DIFFERS;
with --allow-differences (a change to the math) the largest difference is printed and it is timed.

Workloads (float32):
  W1      symmetry 6-2-1, 64 cases, 2,000 full-batch sweeps
  W3      784-256-10, mini-batch 64, one epoch of 12,000 shuffled cases
  W4      1024-1024-1024-10, mini-batch 256, one epoch of 5,120 cases
  S       bench/real_data.py's synthetic net: 100-100-10 ReLU, softmax and cross-entropy,
          mini-batch 200, one epoch of 20,000 shuffled cases (float64 X, as scikit-learn passes)
  digits  64-100-10 the same, 20 epochs of 1,437 cases (the size of the digits training set)
  SE      bench/real_data.py's synthetic task itself: BPClassifier (SGD) on 100,000 x 100 float64
          cases, 2 epochs; its float32 copy (40 MB) outgrows the caches, as S's cases do not,
          so gathering shuffled batches reads memory (needs scikit-learn)
  W5      a population of 256 symmetry nets, 300 full-batch sweeps
  W7      the sequence-completion recurrent net 5-30-3, T = 6, 20 sequences, 500 sweeps
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np


def load_arm(path: str, name: str, into: str):
    """The bpfast package at `path` (or at path/bpfast) imported as `name`."""
    package = path if os.path.exists(os.path.join(path, "__init__.py")) else \
        os.path.join(path, "bpfast")
    if not os.path.exists(os.path.join(package, "__init__.py")):
        raise SystemExit(f"{path}: no bpfast package there (copy a built src/bpfast)")
    shutil.copytree(package, os.path.join(into, name))
    return importlib.import_module(name)


def chain_fit(sizes, n_cases, batch, sweeps, lr, seed=0, softmax=False, x_dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_cases, sizes[0])).astype(x_dtype)
    T = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], n_cases)]
    options = dict(loss="cross_entropy", reduction="mean") if softmax else {}

    def run(bp, n_threads):
        if softmax:
            net = bp.Network(sizes, activation="relu", output_activation="softmax", seed=1,
                             init="glorot")
        else:
            net = bp.Network(sizes, seed=1, init_range=1.0 / np.sqrt(sizes[0]))
        net.fit(X, T, lr=lr, momentum=0.9, n_sweeps=sweeps, batch_size=batch,
                shuffle=batch is not None, n_threads=n_threads, evaluate=False, **options)
        return net.params
    return run


def once(make):
    """make(bp) computed on the first call only: a workload's data, built outside its timed runs
    (every build makes the same arrays)."""
    made = []

    def get(bp):
        if not made:
            made.append(make(bp))
        return made[0]
    return get


def symmetry_data(bp):
    X, T = bp.datasets.symmetry()
    return X.astype(np.float32), T.astype(np.float32)


def sequences_data(bp):
    d = bp.datasets.sequences()
    train, _ = d.split()
    return d.X[train], d.T[train]


def estimator_fit(n_cases, epochs):
    """BPClassifier as bench/real_data.py trains it (SGD), on its synthetic task."""
    def make(bp):
        from sklearn.datasets import make_classification
        from sklearn.preprocessing import StandardScaler
        X, y = make_classification(n_samples=n_cases, n_features=100, n_informative=50,
                                   n_classes=10, n_clusters_per_class=2, class_sep=2.0,
                                   random_state=0)
        return StandardScaler().fit_transform(X), y
    data = once(make)

    def run(bp, n_threads):
        X, y = data(bp)
        estimators = importlib.import_module(bp.__name__ + ".estimators")
        clf = estimators.BPClassifier(hidden_layer_sizes=(100,), solver="sgd",
                                      learning_rate_init=0.1, batch_size=200, max_iter=epochs,
                                      tol=0.0, n_iter_no_change=epochs + 1, random_state=0,
                                      n_threads=n_threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # max_iter reached: every epoch is run, as meant
            clf.fit(X, y)
        return clf.network_.params
    return run


def population_fit(members, sweeps):
    data = once(symmetry_data)

    def run(bp, n_threads):
        X, T = data(bp)
        pop = bp.Population([6, 2, 1], seeds=np.arange(members))
        pop.fit(X, T, lr=0.1, momentum=0.9, n_sweeps=sweeps, n_threads=n_threads)
        return pop.params
    return run


def recurrent_fit(sweeps):
    data = once(sequences_data)

    def run(bp, n_threads):
        X, T = data(bp)
        net = bp.RecurrentNetwork(5, 30, 3, 6, seed=0, init_range=1.0)
        net.fit(X, T, lr=0.005, momentum=0.9, n_sweeps=sweeps, n_threads=n_threads,
                evaluate=False)
        return net.params
    return run


def symmetry_fit(sweeps):
    data = once(symmetry_data)

    def run(bp, n_threads):
        X, T = data(bp)
        net = bp.Network([6, 2, 1], seed=1)
        net.fit(X, T, lr=0.1, momentum=0.9, n_sweeps=sweeps, n_threads=n_threads,
                evaluate=False)
        return net.params
    return run


def workloads(smoke: bool):
    scale = 10 if smoke else 1
    return {
        "W1": symmetry_fit(2000 // scale),
        "W3": chain_fit([784, 256, 10], 12000 // scale, 64, 1, 0.01),
        "W4": chain_fit([1024, 1024, 1024, 10], 5120 // scale, 256, 1, 0.001),
        "S": chain_fit([100, 100, 10], 20000 // scale, 200, 1, 0.1, softmax=True,
                       x_dtype=np.float64),
        "digits": chain_fit([64, 100, 10], 1437, 200, 20 // scale, 0.1, softmax=True,
                            x_dtype=np.float64),
        "SE": estimator_fit(100_000 // scale, 2),
        "W5": population_fit(256 // scale, 300 // scale),
        "W7": recurrent_fit(500 // scale),
    }


def paired(run, arms, n_threads, rounds):
    """Seconds of each arm per round, alternating which goes first."""
    times = [[], []]
    for r in range(rounds):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            run(arms[i], n_threads)
            times[i].append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", help="directory of the first build (A)")
    parser.add_argument("b", help="directory of the second build (B)")
    parser.add_argument("--workloads", nargs="+", default=["W1", "W3", "S", "digits"])
    parser.add_argument("--isa", nargs="+", default=[None],
                        help="kernel variants (names, or 'all' for every one both builds run); "
                             "default: the one bpfast picks")
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--allow-differences", action="store_true",
                        help="time builds whose weights differ (a change to the math, such as a "
                             "new exp), printing the largest difference instead of refusing")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script")
    args = parser.parse_args(argv)
    found = workloads(args.smoke)
    unknown = sorted(set(args.workloads) - set(found))
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {sorted(found)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        arms = [load_arm(args.a, "bpfast_arm_a", tmp), load_arm(args.b, "bpfast_arm_b", tmp)]
        defaults = [arm.build_info()["simd"] for arm in arms]  # each build's own pick
        isas = args.isa
        if isas == ["all"]:
            isas = [isa for isa in arms[0]._core.available_isas()
                    if isa in arms[1]._core.available_isas()]
        print(f"A = {args.a}\nB = {args.b}\n")
        print("| workload | variant | threads | A (s) | B (s) | B / A, paired: median "
              "(quartiles) |")
        print("|---|---|---|---|---|---|")
        status = 0
        for key in args.workloads:
            for isa in isas:
                for arm, default in zip(arms, defaults):
                    arm._core.set_isa(isa or default)
                name = isa or defaults[0]
                for n_threads in args.threads:
                    run = found[key]
                    w_a, w_b = run(arms[0], n_threads), run(arms[1], n_threads)
                    if not np.array_equal(w_a, w_b):
                        if not args.allow_differences:
                            print(f"| {key} | {name} | {n_threads} | DIFFERS: the builds end "
                                  f"with other weights | | |")
                            status = 1
                            continue
                        print(f"({key}, {name}: weights differ by up to "
                              f"{np.max(np.abs(w_a - w_b)):.3g})")
                    a, b = paired(run, arms, n_threads, args.rounds)
                    ratios = np.divide(b, a)
                    q1, q3 = np.quantile(ratios, [0.25, 0.75])
                    print(f"| {key} | {name} | {n_threads} | {statistics.median(a):.4f} | "
                          f"{statistics.median(b):.4f} | {np.median(ratios):.3f} "
                          f"({q1:.3f}-{q3:.3f}) |", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
