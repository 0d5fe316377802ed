"""Training separate networks from several Python threads at once: the GIL is released for the
whole run, so two threads (each n_threads=1) should take about as long as one.

    python bench/threads.py

Checks first that the threaded results equal one-after-another training, then reports the median
of 5 timings of each and the speed-up.
"""

import argparse
import statistics
import threading
import time

import numpy as np

import bpfast


def make_nets(n):
    return [bpfast.Network([64, 128, 8], seed=s) for s in range(n)]


def train(net, X, T):
    net.fit(X, T, n_sweeps=300, lr=0.001, n_threads=1)


def sequential(nets, X, T):
    for net in nets:
        train(net, X, T)


def threaded(nets, X, T):
    threads = [threading.Thread(target=train, args=(net, X, T)) for net in nets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main():
    rng = np.random.default_rng(0)
    X, T = rng.uniform(size=(512, 64)), rng.uniform(size=(512, 8))
    a, b = make_nets(2), make_nets(2)
    sequential(a, X, T)
    threaded(b, X, T)
    assert all(np.array_equal(x.params, y.params) for x, y in zip(a, b)), "threads changed results"
    times = {"one after another": [], "two Python threads": []}
    for _ in range(5):
        for name, run in (("one after another", sequential), ("two Python threads", threaded)):
            nets = make_nets(2)
            time.sleep(0.2)
            start = time.perf_counter()
            run(nets, X, T)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{name}: {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})")
    speedup = statistics.median(times["one after another"]) / statistics.median(times["two Python threads"])
    print(f"speed-up from two threads: {speedup:.2f}x (2 cores)")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help
    main()
