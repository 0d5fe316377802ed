"""Populations: bpfast.Population against a loop of bpfast networks, PyTorch and NumPy.

    python bench/populations.py              # W5 and W6, 1 and 2 threads (a few minutes)
    python bench/populations.py --isa all    # every kernel variant this CPU runs
    python bench/populations.py --smoke      # tiny sizes, seconds: checks the script

Workloads (float32, issue 10):
  W5  1,000 members of the 6-2-1 symmetry net, 64 cases, 1,425 full-batch sweeps each, lr 0.1,
      momentum 0.9, no stop rule. Tools: the population; a Python loop of Network.fit; PyTorch
      with the whole population in batched products (torch.matmul over a (members, ...) batch,
      which is bmm; manual backprop, no autograd: the fastest PyTorch way); NumPy batched the same
      way (np.matmul, in-place ufuncs).
  W6  256 members of the family-trees net, 104 cases, 1,500 full-batch sweeps (the paper's
      schedule), each member holding out its own 4 cases (case weights 0). Tools: the population
      and the loop of Network.fit (the loop is timed on 32 of the members and reported per 256:
      each member costs the same).

Every tool is verified before it is timed: from the population's starting weights, a short run of
each must end with every member's error within float32 tolerance of the population's (and the loop
bit for bit). Runs are interleaved (A, B, C, A, B, C, ...) after a warm-up and reported as median
(min-max) seconds; ratios are of medians. W5 also reports seconds per 1,000 nets and the rate in
GFLOP/s against the core's FMA peak at the clock /proc/cpuinfo gives. That is the nominal clock,
and on a VM it can be well below the real one: on the Zen 3 VM of the README's figures cpuinfo says
2,445 MHz while a loop of independent FMAs runs at 3.1 GHz, so there the percentages are about a
quarter too high.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import numpy as np

import bpfast
from bpfast import Layer, Phase, _core

sys.path.insert(0, __import__("os").path.dirname(__file__))
from compare import cpu_name, thread_limit

# ---- workloads ----------------------------------------------------------------------------------

def w5(smoke):
    X, T = bpfast.datasets.symmetry()
    members = 64 if smoke else 1000
    return dict(key="W5", title=f"symmetry 6-2-1 x {members:,} members, 64 cases, full batch",
                sizes=[6, 2, 1], members=members, sweeps=50 if smoke else 1425,
                X=X.astype(np.float32), T=T.astype(np.float32), weights=None,
                fit=dict(lr=0.1, momentum=0.9), loop_members=members)


FAMILY_SCHEDULE = [Phase(20, 0.005, 0.5), Phase(1480, 0.01, 0.9)]


def family_population(seeds):
    return bpfast.Population(
        inputs={"person": 24, "relation": 12},
        layers=[Layer("person_code", 6, ["person"]), Layer("relation_code", 6, ["relation"]),
                Layer("central", 12, ["person_code", "relation_code"]),
                Layer("decode", 6, ["central"]), Layer("output", 24, ["decode"])],
        seeds=seeds)


def w6(smoke):
    data = bpfast.datasets.family_trees()
    members = 8 if smoke else 256
    rng = np.random.default_rng(0)
    weights = np.ones((members, len(data.X)))
    for row in weights:  # each member's own 4 held-out cases
        row[rng.choice(len(data.X), 4, replace=False)] = 0
    schedule = [Phase(5, 0.005, 0.5), Phase(15, 0.01, 0.9)] if smoke else FAMILY_SCHEDULE
    return dict(key="W6", title=f"family trees x {members:,} members, 104 cases, 4 held out "
                f"each, full batch", members=members, sweeps=sum(p.n_sweeps for p in schedule),
                X=data.X.astype(np.float32), T=data.T.astype(np.float32), weights=weights,
                fit=dict(schedule=schedule), loop_members=4 if smoke else 32)


def make_population(workload, members=None):
    seeds = range(workload["members"] if members is None else members)
    if workload["key"] == "W6":
        return family_population(seeds)
    return bpfast.Population(workload["sizes"], seeds=seeds)


# ---- tools --------------------------------------------------------------------------------------

class PopulationTool:
    def __init__(self, isa):
        self.isa, self.name = isa, f"population {isa}"

    def run(self, workload, threads, members=None, sweeps=None):
        _core.set_isa(self.isa)
        pop = make_population(workload, members)
        weights = workload["weights"]
        if weights is not None and members is not None:
            weights = weights[:members]
        fit = dict(workload["fit"])
        if sweeps is not None:
            fit = {k: v for k, v in fit.items() if k != "schedule"}
            fit.setdefault("lr", 0.01)
        start = time.perf_counter()
        result = pop.fit(workload["X"], workload["T"], n_sweeps=sweeps or (
            None if "schedule" in fit else workload["sweeps"]), sample_weight=weights,
            n_threads=threads, **fit)
        return time.perf_counter() - start, pop, result


class LoopTool:
    """A Python loop of Network.fit, one network after another (each on `threads` threads)."""

    def __init__(self, isa):
        self.isa, self.name = isa, f"loop of networks {isa}"

    def run(self, workload, threads, members=None, sweeps=None):
        _core.set_isa(self.isa)
        pop = make_population(workload, members or workload["loop_members"])
        fit = dict(workload["fit"])
        if sweeps is not None:
            fit = {k: v for k, v in fit.items() if k != "schedule"}
            fit.setdefault("lr", 0.01)
        n_sweeps = sweeps or (None if "schedule" in fit else workload["sweeps"])
        nets = list(pop)
        start = time.perf_counter()
        for i, net in enumerate(nets):
            weights = None if workload["weights"] is None else workload["weights"][i]
            net.fit(workload["X"], workload["T"], n_sweeps=n_sweeps, sample_weight=weights,
                    n_threads=threads, evaluate=False, **fit)
        elapsed = time.perf_counter() - start
        for i, net in enumerate(nets):
            pop[i] = net
        return elapsed, pop, None


def unpack_chain(pop):
    """[(W (members, in, out), b (members, 1, out))] of a chain population, float32 copies."""
    topo, names = pop.topology, pop.topology.names
    blocks = []
    for l in range(1, len(names)):
        offset, (n_out, n_in) = topo.weight_block(names[l], names[l - 1])
        W = pop.params[:, offset: offset + n_out * n_in].reshape(-1, n_out, n_in)
        b_offset, _ = topo.bias_block(names[l])
        b = pop.params[:, b_offset: b_offset + n_out].reshape(-1, 1, n_out)
        blocks.append((np.ascontiguousarray(W.transpose(0, 2, 1)), b.copy()))
    return blocks


def pack_chain(pop, blocks):
    topo, names = pop.topology, pop.topology.names
    for l, (W, b) in zip(range(1, len(names)), blocks):
        offset, (n_out, n_in) = topo.weight_block(names[l], names[l - 1])
        pop.params[:, offset: offset + n_out * n_in] = \
            np.asarray(W).transpose(0, 2, 1).reshape(-1, n_out * n_in)
        b_offset, _ = topo.bias_block(names[l])
        pop.params[:, b_offset: b_offset + n_out] = np.asarray(b).reshape(-1, n_out)


def logistic_(A, b):
    """1 / (1 + exp(-(A + b))), in place in A (float32 throughout)."""
    A += b
    np.negative(A, out=A)
    np.exp(A, out=A)
    A += np.float32(1)
    return np.reciprocal(A, out=A)


class NumpyTool:
    """The population as one batch of matrix products: np.matmul over (members, cases, units)."""

    name = "numpy batched"

    def run(self, workload, threads, members=None, sweeps=None):
        pop = make_population(workload, members)
        (W1, b1), (W2, b2) = unpack_chain(pop)
        X, T = workload["X"], workload["T"]
        lr, alpha = np.float32(workload["fit"]["lr"]), np.float32(workload["fit"]["momentum"])
        V = [np.zeros_like(a) for a in (W1, b1, W2, b2)]
        one = np.float32(1)
        with thread_limit(threads):
            start = time.perf_counter()
            for _ in range(sweeps or workload["sweeps"]):
                H = logistic_(np.matmul(X, W1), b1)
                Y = logistic_(np.matmul(H, W2), b2)
                dY = (Y - T) * Y * (one - Y)
                dH = np.matmul(dY, W2.transpose(0, 2, 1))
                dH *= H
                dH *= one - H
                grads = (np.matmul(X.T, dH), dH.sum(axis=1, keepdims=True),
                         np.matmul(H.transpose(0, 2, 1), dY), dY.sum(axis=1, keepdims=True))
                for param, v, g in zip((W1, b1, W2, b2), V, grads):
                    v *= alpha
                    v -= lr * g
                    param += v
            elapsed = time.perf_counter() - start
        pack_chain(pop, [(W1, b1), (W2, b2)])
        return elapsed, pop, None


class TorchTool:
    """The population as one batch of matrix products in PyTorch: torch.matmul over (members,
    cases, units) (bmm), manual backprop under no_grad, in-place momentum updates."""

    name = "torch batched"

    def __init__(self):
        import torch
        self.torch = torch

    def run(self, workload, threads, members=None, sweeps=None):
        torch = self.torch
        pop = make_population(workload, members)
        blocks = unpack_chain(pop)
        (W1, b1), (W2, b2) = [(torch.from_numpy(W), torch.from_numpy(b)) for W, b in blocks]
        X, T = torch.from_numpy(workload["X"]), torch.from_numpy(workload["T"])
        XT = X.T.contiguous()
        lr, alpha = workload["fit"]["lr"], workload["fit"]["momentum"]
        params = (W1, b1, W2, b2)
        V = [torch.zeros_like(p) for p in params]
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                start = time.perf_counter()
                for _ in range(sweeps or workload["sweeps"]):
                    H = torch.sigmoid(torch.matmul(X, W1).add_(b1))
                    Y = torch.sigmoid(torch.matmul(H, W2).add_(b2))
                    dY = (Y - T).mul_(Y).mul_(1 - Y)
                    dH = torch.bmm(dY, W2.transpose(1, 2)).mul_(H).mul_(1 - H)
                    grads = (torch.matmul(XT, dH), dH.sum(1, keepdim=True),
                             torch.bmm(H.transpose(1, 2), dY), dY.sum(1, keepdim=True))
                    for param, v, g in zip(params, V, grads):
                        v.mul_(alpha).add_(g, alpha=-lr)
                        param.add_(v)
                elapsed = time.perf_counter() - start
        finally:
            torch.set_num_threads(before)
        pack_chain(pop, [(W1.numpy(), b1.numpy()), (W2.numpy(), b2.numpy())])
        return elapsed, pop, None


# ---- verification and timing ----------------------------------------------------------------

def member_errors(pop, workload):
    outputs = pop.predict(workload["X"])
    weights = np.ones((len(pop), len(workload["X"]))) if workload["weights"] is None else \
        workload["weights"][:len(pop)]
    return 0.5 * (((outputs - workload["T"]) ** 2).sum(axis=2) * weights).sum(axis=1)


def verify(tool, oracle, workload):
    """A short run of `tool` against the population's: the same errors (float32 tolerance), and
    for the loop the same weights bit for bit."""
    members = min(workload["loop_members"], 16)
    sweeps = 30
    _, expected, _ = oracle.run(workload, 1, members=members, sweeps=sweeps)
    _, got, _ = tool.run(workload, 1, members=members, sweeps=sweeps)
    if isinstance(tool, LoopTool):
        return bool(np.array_equal(got.params, expected.params))
    return bool(np.allclose(member_errors(got, workload), member_errors(expected, workload),
                            rtol=1e-3, atol=1e-4))


def fma_peak(isa):
    """(Single-core multiply-adds per second, MHz): 2 FMA units x lanes x the clock read off
    cpuinfo (nominal: see the module docstring)."""
    mhz = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    lanes = {"avx512": 16, "avx2": 8, "baseline": 4}[isa]
    return None if mhz is None else (2 * lanes * mhz * 1e6, mhz)


def flops(workload):
    """2 flops per multiply-add of the forward pass, weight and input gradients, per member."""
    pop = make_population(workload, 1)
    topo = pop.topology
    forward = topo.n_weights
    inputs = sum(int(topo.size[l]) * int(topo.size[topo.src_layer[e]])
                 for l in range(topo.n_inputs, topo.n_layers)
                 for e in range(topo.src_start[l], topo.src_start[l + 1])
                 if topo.src_layer[e] >= topo.n_inputs)
    return 2 * (2 * forward + inputs) * len(workload["X"]) * workload["sweeps"] * \
        workload["members"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workloads", nargs="+", default=["W5", "W6"])
    parser.add_argument("--isa", nargs="+", default=None,
                        help="kernel variants ('all': every one this CPU runs)")
    args = parser.parse_args(argv)
    isas = _core.available_isas() if args.isa == ["all"] else (
        args.isa or [bpfast.build_info()["simd"]])
    repeats = args.repeats or (1 if args.smoke else 3)
    print(f"CPU: {cpu_name()}; kernel variants: {', '.join(isas)}; bpfast "
          f"{bpfast.__version__}; numpy {np.__version__}")
    failed = False
    for workload in [w(args.smoke) for w in (w5, w6) if w.__name__.upper() in args.workloads]:
        print(f"\n## {workload['key']}: {workload['title']}, {workload['sweeps']:,} sweeps")
        tools = [tool for isa in isas for tool in (PopulationTool(isa), LoopTool(isa))]
        if workload["key"] == "W5":
            tools.append(NumpyTool())
            with contextlib.suppress(ImportError):
                tools.append(TorchTool())
        checked = []
        for tool in tools:
            # the loop against the population of its own kernel variant (bit for bit); the
            # others against the first variant's population (float32 tolerance)
            oracle = PopulationTool(getattr(tool, "isa", isas[0]))
            ok = verify(tool, oracle, workload)
            print(f"verified {tool.name}: {'ok' if ok else 'MISMATCH, not timed'}")
            failed |= not ok
            if ok:
                checked.append(tool)
        for threads in args.threads:
            times: dict[str, list[float]] = {tool.name: [] for tool in checked}
            for tool in checked:  # warm-up
                tool.run(workload, threads, sweeps=min(20, workload["sweeps"]))
            for _ in range(repeats):
                for tool in checked:
                    # Thread pools (OpenBLAS's, PyTorch's, ours) spin-wait for a while after their
                    # last task; without a pause, the tool timed next shares its cores with that
                    # spinning (as in compare.py).
                    time.sleep(0.02 if args.smoke else 0.3)
                    elapsed, _, _ = tool.run(workload, threads)
                    if isinstance(tool, LoopTool):  # per the whole population
                        elapsed *= workload["members"] / workload["loop_members"]
                    times[tool.name].append(elapsed)
            print(f"\n{threads} thread{'s' if threads > 1 else ''}: median (min-max) seconds "
                  f"for all {workload['members']:,} members")
            best = {isa: statistics.median(times[f"population {isa}"]) for isa in isas
                    if f"population {isa}" in times}
            for name, values in times.items():
                median = statistics.median(values)
                line = f"  {name:28s} {median:8.3f} ({min(values):.3f}-{max(values):.3f})"
                if name.startswith("population"):
                    isa = name.split()[-1]
                    rate = flops(workload) / median
                    line += f"  {rate / 1e9:6.2f} GFLOP/s"
                    peak = fma_peak(isa)
                    if peak is not None:
                        fmas, mhz = peak
                        line += (f" ({rate / (2 * fmas * threads):.0%} of {threads}-core FMA "
                                 f"peak at cpuinfo's {mhz:,.0f} MHz)")
                    if workload["key"] == "W5":
                        line += f", {median / workload['members'] * 1000:.3f} s per 1,000 nets"
                else:
                    ratios = ", ".join(f"population {isa} is {median / m:.1f}x faster"
                                       for isa, m in best.items())
                    line += f"  ({ratios})"
                print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
