"""bpfast against NumPy, PyTorch and scikit-learn on the same networks, data, weights and update.

    python bench/compare.py              # the full table (a few minutes)
    python bench/compare.py --isa all    # every kernel variant this CPU runs, side by side
    python bench/compare.py --smoke      # tiny sizes, seconds: checks the script and every tool

Workloads (float32): W1 symmetry 6-2-1, 64 cases, full batch (µs/sweep); W2 family trees
(24->6, 12->6)->12->6->24, 100 cases, full batch (µs/sweep); W3 784-256-10, mini-batch 64, 60,000
cases (samples/s); W4 1024-1024-1024-10, mini-batch 256, 20,480 cases (samples/s). Every net is
logistic, trained by plain SGD with momentum on the summed squared error, and the data are
synthetic (timing does not depend on the values). W7, a recurrent net trained through time (the
sequence-completion net, µs/sweep), runs last through bench/recurrent.py, whose docstring says
how (W5 and W6, populations, are bench/populations.py's).

Tools: bpfast (one column per kernel variant with --isa: "bpfast avx2", ...); "reference",
bpfast.reference (NumPy float64: the oracle every tool is verified against, not timed); "numpy", a
float32 NumPy implementation of the same training (any topology: matmul per edge, in-place ufuncs);
"torch", PyTorch eager on the CPU (nn.Linear,
sigmoid, torch.optim.SGD with momentum, which is exactly the paper's update); "sklearn",
MLPRegressor(solver="sgd") - it cannot do exactly the same: its output units are linear and it
averages the gradient over a mini-batch, so it trains the same net with linear outputs at
lr / 10 × batch size (linear outputs diverge at the logistic nets' rate), and is checked against
the reference doing that. Tools that are not installed
are skipped.

bpfast's fit runs with evaluate=False (no pass over every case after training, which the other
tools do not make either). Before timing anything, every tool trains a short run from the same initial weights; the error of
its final weights (evaluated by the reference) must match the reference's own run within float32
tolerance, or the tool is not reported. Runs are interleaved (A, B, C, A, B, C, ...), warmed up,
repeated, and reported as median (min-max). Each row also gives bpfast's rate in GFLOP/s (2 flops
per multiply-add of the forward pass, the weight gradients and the input gradients), beside the
single- and two-thread sgemm rate NumPy's BLAS reaches on this CPU, and checks the speed targets of
issue 9. A kernel variant slower than the baseline variant on the same row is a bug: it is printed
as one and the script exits with status 2 (not in --smoke mode, whose sizes are too small to time).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import bpfast
from bpfast import Layer, _core, reference


# ---- workloads ----------------------------------------------------------------------------------

@dataclass
class Workload:
    key: str
    title: str
    make_net: callable          # (output_activation) -> bpfast.Network, float32
    n_cases: int
    batch_size: int | None      # None: full-batch sweeps
    lr: float
    momentum: float = 0.9
    chain: list | None = None   # layer sizes, for tools that only do chains
    smoke_cases: int | None = None
    data: tuple = field(default=None, repr=False)

    @property
    def per_sample(self):
        return self.batch_size is not None


def chain_net(sizes):
    return lambda out="logistic": bpfast.Network(sizes, seed=1, output_activation=out,
                                                 init_range=1.0 / np.sqrt(max(sizes[0], 9)))


def family_trees_net(out="logistic"):
    return bpfast.Network(
        inputs={"person": 24, "relation": 12},
        layers=[Layer("person_code", 6, ["person"]), Layer("relation_code", 6, ["relation"]),
                Layer("central", 12, ["person_code", "relation_code"]),
                Layer("decode", 6, ["central"]), Layer("output", 24, ["decode"], activation=out)],
        seed=1)


def make_data(workload, n_cases):
    rng = np.random.default_rng(0)
    if workload.key == "W1":
        X, T = bpfast.datasets.symmetry()
        return X.astype(np.float32), T.astype(np.float32)
    n_in = workload.make_net().topology.n_input_cols
    n_out = workload.make_net().topology.n_outputs
    if workload.key == "W2":
        X = np.zeros((n_cases, n_in))
        X[np.arange(n_cases), rng.integers(0, 24, n_cases)] = 1
        X[np.arange(n_cases), 24 + rng.integers(0, 12, n_cases)] = 1
        T = (rng.uniform(size=(n_cases, n_out)) < 0.06).astype(float)
    else:
        X = rng.uniform(size=(n_cases, n_in))
        T = np.eye(n_out)[rng.integers(0, n_out, n_cases)]
    return X.astype(np.float32), T.astype(np.float32)


WORKLOADS = [
    Workload("W1", "symmetry 6-2-1, 64 cases, full batch", lambda out="logistic": bpfast.Network(
        [6, 2, 1], seed=1, output_activation=out), 64, None, 0.1, chain=[6, 2, 1]),
    Workload("W2", "family trees (24→6, 12→6)→12→6→24, 100 cases, full batch", family_trees_net,
             100, None, 0.01),
    Workload("W3", "784-256-10, mini-batch 64, 60,000 cases", chain_net([784, 256, 10]), 60000, 64,
             0.01, chain=[784, 256, 10], smoke_cases=128),
    Workload("W4", "1024-1024-1024-10, mini-batch 256, 20,480 cases",
             chain_net([1024, 1024, 1024, 10]), 20480, 256, 0.001, chain=[1024, 1024, 1024, 10],
             smoke_cases=256),
]


# ---- tools --------------------------------------------------------------------------------------

def thread_limit(n_threads):
    """Limit NumPy's BLAS to n_threads (threadpoolctl comes with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n_threads)


def chain_blocks(net):
    """[(W (out, in), b (out,)) per layer] as views into a chain net's arena."""
    names = net.topology.names
    return [(net.weights(names[i], names[i - 1]), net.bias(names[i])) for i in range(1, len(names))]


class Tool:
    name = ""
    module = None           # the optional package the tool needs, if any
    chain_only = False
    linear_outputs = False  # trains the net with identity output units
    lr_scale = 1.0          # trains at workload.lr × this (the work timed does not depend on it)

    def available(self):
        import importlib.util
        return self.module is None or importlib.util.find_spec(self.module) is not None

    def supports(self, workload):
        return workload.chain is not None or not self.chain_only


class BpfastTool(Tool):
    """bpfast with one kernel variant (isa) or the one it picks by itself (isa None)."""

    def __init__(self, isa=None):
        self.isa = isa
        self.name = "bpfast" if isa is None else f"bpfast {isa}"

    def setup(self, net, workload, n_threads):
        self.net, self.workload, self.n_threads = net, workload, n_threads

    def run(self, X, T, n_units):
        if self.isa is not None:
            _core.set_isa(self.isa)  # each call reads the variant once, at its start
        w = self.workload
        # evaluate=False: no extra pass over every case after training, which no other tool
        # makes (for a one-epoch fit of W3/W4 it would add a third to a half of the work).
        if w.per_sample:
            self.net.fit(X, T, lr=w.lr, momentum=w.momentum, n_sweeps=1, batch_size=w.batch_size,
                         shuffle=False, n_threads=self.n_threads, evaluate=False)
        else:
            self.net.fit(X, T, lr=w.lr, momentum=w.momentum, n_sweeps=n_units,
                         n_threads=self.n_threads, evaluate=False)

    def params(self):
        return self.net.params.astype(np.float64)


class ReferenceTool(Tool):
    name = "reference"

    def setup(self, net, workload, n_threads):
        self.topology, self.workload, self.n_threads = net.topology, workload, n_threads
        self.p = net.params.astype(np.float64)
        self.v = np.zeros_like(self.p)

    def run(self, X, T, n_units):
        w = self.workload
        sweeps = 1 if w.per_sample else n_units
        with thread_limit(self.n_threads):
            reference.train(self.topology, self.p, self.v, X, T, [(sweeps, w.lr, w.momentum, 0.0, 0)],
                            batch_size=w.batch_size or len(X), shuffle=False)

    def params(self):
        return self.p


class NumpyTool(Tool):
    """Float32 NumPy, written for speed: BLAS products per edge, in-place ufuncs. Any topology of
    logistic layers (several input groups, skip connections), like bpfast's."""
    name = "numpy"

    def setup(self, net, workload, n_threads):
        self.workload, self.n_threads, self.topology = workload, n_threads, net.topology
        topo = net.topology
        self.edges = [(layer.name, src) for layer in topo.layers for src in layer.sources]
        self.W = {e: net.weights(*e).copy() for e in self.edges}
        self.b = {layer.name: net.bias(layer.name).copy() for layer in topo.layers if layer.bias}
        self.vW = {e: np.zeros_like(W) for e, W in self.W.items()}
        self.vb = {name: np.zeros_like(b) for name, b in self.b.items()}

    def update(self, param, velocity, grad):
        w = self.workload
        velocity *= w.momentum
        grad *= w.lr
        velocity -= grad
        param += velocity

    def step(self, x, t):
        topo = self.topology
        acts = {name: x[:, topo.input_col[i]:topo.input_col[i] + topo.size[i]]
                for i, name in enumerate(topo.input_names)}
        for layer in topo.layers:
            z = None
            for src in layer.sources:
                product = acts[src] @ self.W[(layer.name, src)].T
                z = product if z is None else np.add(z, product, out=z)
            if layer.bias:
                z += self.b[layer.name]
            np.negative(z, out=z)
            np.exp(z, out=z)
            z += 1
            np.reciprocal(z, out=z)
            acts[layer.name] = z
        deltas = {topo.layers[-1].name: acts[topo.layers[-1].name] - t}
        for layer in reversed(topo.layers):
            y, delta = acts[layer.name], deltas.pop(layer.name)
            delta *= y * (1 - y)
            for src in layer.sources:
                W = self.W[(layer.name, src)]
                if src not in topo.input_names:  # the gradient flowing down, with the old W
                    down = delta @ W
                    deltas[src] = down if src not in deltas else np.add(deltas[src], down,
                                                                        out=deltas[src])
                self.update(W, self.vW[(layer.name, src)], delta.T @ acts[src])
            if layer.bias:
                self.update(self.b[layer.name], self.vb[layer.name], delta.sum(0))

    def run(self, X, T, n_units):
        w = self.workload
        with thread_limit(self.n_threads):
            if w.per_sample:
                for start in range(0, len(X), w.batch_size):
                    self.step(X[start:start + w.batch_size], T[start:start + w.batch_size])
            else:
                for _ in range(n_units):
                    self.step(X, T)

    def params(self):
        topo = self.topology
        return np.concatenate([self.W[e].ravel() for e in self.edges] +
                              [self.b[layer.name] for layer in topo.layers if layer.bias]
                              ).astype(np.float64)


class TorchTool(Tool):
    name = "torch"
    module = "torch"

    def setup(self, net, workload, n_threads):
        import torch
        torch.set_num_threads(n_threads)
        self.torch, self.workload, self.topology = torch, workload, net.topology
        topo = net.topology
        self.linears = {}
        for l in range(topo.n_inputs, topo.n_layers):
            layer = topo.layers[l - topo.n_inputs]
            for k, src in enumerate(layer.sources):
                lin = torch.nn.Linear(int(topo.size[topo.index[src]]), layer.size,
                                      bias=(k == 0 and layer.bias))
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(net.weights(layer.name, src).copy()))
                    if k == 0 and layer.bias:
                        lin.bias.copy_(torch.from_numpy(net.bias(layer.name).copy()))
                self.linears[(layer.name, src)] = lin
        params = [p for lin in self.linears.values() for p in lin.parameters()]
        self.optimizer = torch.optim.SGD(params, lr=workload.lr, momentum=workload.momentum)

    def forward(self, x):
        topo = self.topology
        cols = topo.input_col
        acts = {name: x[:, cols[i]:cols[i] + topo.size[i]] for i, name in enumerate(topo.input_names)}
        for layer in topo.layers:
            z = sum(self.linears[(layer.name, src)](acts[src]) for src in layer.sources)
            acts[layer.name] = self.torch.sigmoid(z)
        return acts[topo.layers[-1].name]

    def run(self, X, T, n_units):
        torch, w = self.torch, self.workload
        X, T = torch.from_numpy(X), torch.from_numpy(T)
        bs = w.batch_size or len(X)
        steps = range(0, len(X), bs) if w.per_sample else [0] * n_units
        for start in steps:
            self.optimizer.zero_grad(set_to_none=True)
            y = self.forward(X[start:start + bs])
            loss = 0.5 * ((y - T[start:start + bs]) ** 2).sum()
            loss.backward()
            self.optimizer.step()

    def params(self):
        topo = self.topology
        parts = [self.linears[(lay.name, src)].weight.detach().numpy().ravel()
                 for lay in topo.layers for src in lay.sources]
        parts += [self.linears[(lay.name, lay.sources[0])].bias.detach().numpy()
                  for lay in topo.layers if lay.bias]
        return np.concatenate(parts).astype(np.float64)


class SklearnTool(Tool):
    name = "sklearn"
    module = "sklearn"
    chain_only = True
    linear_outputs = True
    # Linear outputs lack the logistic's y(1-y) <= 1/4 damping: at the logistic nets' rates they
    # diverge within a few hundred sweeps, so sklearn trains (and is checked) at a tenth of them.
    lr_scale = 0.1

    def setup(self, net, workload, n_threads):
        import warnings
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        self.workload, self.n_threads = workload, n_threads
        sizes = workload.chain
        bs = workload.batch_size or workload.n_cases
        # sklearn averages the gradient over a mini-batch; lr × batch size makes the step the same
        # as the summed gradient's.
        self.est = MLPRegressor(hidden_layer_sizes=sizes[1:-1], activation="logistic",
                                solver="sgd", batch_size=bs, learning_rate_init=workload.lr * bs,
                                momentum=workload.momentum, nesterovs_momentum=False, alpha=0.0,
                                shuffle=False, max_iter=1, n_iter_no_change=10**9, tol=0)
        # Start from bpfast's weights: sklearn has no public way to set initial weights.
        self.est._random_state = np.random.RandomState(0)
        self.est._initialize(np.zeros((1, sizes[-1]), np.float32), sizes, np.float32)
        self.est.coefs_ = [W.T.copy() for W, _ in chain_blocks(net)]
        self.est.intercepts_ = [b.copy() for _, b in chain_blocks(net)]

    def run(self, X, T, n_units):
        T = T.ravel() if T.shape[1] == 1 else T  # sklearn wants one output as a 1-D target
        with thread_limit(self.n_threads):
            for _ in range(1 if self.workload.per_sample else n_units):
                self.est.partial_fit(X, T)

    def params(self):
        return np.concatenate([c.T.ravel() for c in self.est.coefs_] +
                              list(self.est.intercepts_)).astype(np.float64)


COMPARISONS = [NumpyTool(), TorchTool(), SklearnTool()]

# Issue 9's targets: bpfast's speed over each tool, per workload (and thread count where they
# differ), for every kernel variant.
TARGETS = {
    "W1": {1: {"numpy": 150, "torch": 1000}, 2: {"numpy": 150, "torch": 1000}},
    "W2": {1: {"numpy": 8, "torch": 40}, 2: {"numpy": 8, "torch": 40}},
    "W3": {1: {"numpy": 1.2, "torch": 1.5}, 2: {"numpy": 1.2}},
    "W4": {1: {"numpy": 1.1, "torch": 1.1}, 2: {"numpy": 1.1, "torch": 1.1}},
}


def flops_per_case(topology):
    """2 flops per multiply-add of one case's forward pass, weight gradients and input gradients."""
    macs = 0
    for layer in topology.layers:
        for src in layer.sources:
            edge = layer.size * int(topology.size[topology.index[src]])
            macs += 2 * edge + (edge if src not in topology.input_names else 0)
    return 2 * macs


def sgemm_rate(n_threads, n=1024, repeats=5):
    """GFLOP/s of NumPy's float32 matmul of two n x n matrices on n_threads (the best of a few)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    out = np.empty_like(a)
    best = float("inf")
    with thread_limit(n_threads):
        np.matmul(a, a, out=out)
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, a, out=out)
            best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- verification and timing --------------------------------------------------------------------

def for_tool(tool, workload):
    return dataclasses.replace(workload, lr=workload.lr * tool.lr_scale)


def param_blocks(topo):
    """Each weight matrix's and bias vector's slice of a network's parameters."""
    for layer in range(topo.n_inputs, topo.n_layers):
        for edge in range(topo.src_start[layer], topo.src_start[layer + 1]):
            size = int(topo.size[layer]) * int(topo.size[topo.src_layer[edge]])
            yield slice(int(topo.w_offset[edge]), int(topo.w_offset[edge]) + size)
        if topo.bias_offset[layer] >= 0:
            start = int(topo.bias_offset[layer])
            yield slice(start, start + int(topo.size[layer]))


def verify(tool, workload, X, T):
    """Train a short run with `tool` and with the reference from the same weights; every weight
    matrix and bias vector must have moved as the reference's did, and the errors agree."""
    workload = for_tool(tool, workload)
    out = "identity" if tool.linear_outputs else "logistic"
    net = workload.make_net(out)
    if tool.linear_outputs:  # its mean-gradient step (lr × batch) matches the summed one only
        bs = workload.batch_size or len(X)  # on whole batches
        X, T = X[: max(bs, len(X) // bs * bs)], T[: max(bs, len(X) // bs * bs)]
    units = 3 if not workload.per_sample else len(X)
    ref = ReferenceTool()
    ref.setup(net, workload, 1)
    ref.run(X, T, units)
    tool.setup(workload.make_net(out), workload, 1)
    tool.run(X, T, units)
    topo = net.topology
    e_ref = 0.5 * np.sum((reference.forward(topo, ref.params(), X) - T) ** 2)
    e_tool = 0.5 * np.sum((reference.forward(topo, tool.params(), X) - T) ** 2)
    e_start = 0.5 * np.sum((reference.forward(topo, net.params, X) - T) ** 2)
    # float32 tools vs float64: a few sweeps keep them within ~1e-5 of each other; 1e-3 of the
    # change in error still catches a tool that trains anything else (a wrong lr or loss scale).
    ok = abs(e_tool - e_ref) <= 1e-4 * e_ref + 1e-3 * abs(e_start - e_ref)
    # The error alone can pass a wrong tool (W3's and W4's outputs all sink towards 0 at first,
    # whatever the hidden layers do): so each block's change, too, within 1e-2 of the
    # reference's (float32 rounding is ~1e-5 of it here; a wrong lr is 1/2 of it, a block left
    # untrained all of it), plus float32's rounding of the weights themselves.
    p_start, p_ref, p_tool = net.params.astype(np.float64), ref.params(), tool.params()
    for block in param_blocks(topo):
        change = np.abs(p_ref[block] - p_start[block]).max()
        off = np.abs(p_tool[block] - p_ref[block]).max()
        ok = ok and off <= 1e-2 * change + 1e-6 * np.abs(p_ref[block]).max()
    return ok, e_tool, e_ref


def measure(workload, tools, n_threads, repeats, smoke):
    n = (workload.smoke_cases if smoke else None) or workload.n_cases
    X, T = make_data(workload, n)
    # Work per timed run: enough to take ~0.2 s for each tool (less in smoke mode).
    target = 0.02 if smoke else 0.2
    results = {}
    runners = {}
    def fresh(tool):  # every timed run starts from the same weights: the same work each time
        tool.setup(workload.make_net("identity" if tool.linear_outputs else "logistic"),
                   for_tool(tool, workload), n_threads)

    for tool in tools:
        units = 1
        while True:  # warm-up, and the cost of a unit from a run long enough to hide the call's
            fresh(tool)
            start = time.perf_counter()
            tool.run(X, T, units)
            elapsed = time.perf_counter() - start
            if workload.per_sample or elapsed >= target / 4:
                break
            units *= 8
        if not workload.per_sample:
            units = max(1, int(units * target / elapsed))
        runners[tool.name] = (tool, units)
        results[tool.name] = []
    for _ in range(repeats):
        for name, (tool, units) in runners.items():
            fresh(tool)
            # Thread pools (OpenBLAS's, PyTorch's, ours) spin-wait for a while after their last
            # task; without a pause, the tool timed next shares its cores with that spinning.
            time.sleep(0.02 if smoke else 0.3)
            start = time.perf_counter()
            tool.run(X, T, units)
            elapsed = time.perf_counter() - start
            results[name].append(elapsed / units if not workload.per_sample else n / elapsed)
    return results


def fmt(values, per_sample):
    if per_sample:
        med = statistics.median(values)
        return f"{med:,.0f} ({min(values):,.0f}–{max(values):,.0f})"
    us = [v * 1e6 for v in values]
    return f"{statistics.median(us):.2f} ({min(us):.2f}–{max(us):.2f})"


def speedup(bp, other, per_sample):
    a, b = statistics.median(bp), statistics.median(other)
    return a / b if per_sample else b / a


def ratio(r):
    return f"{r:.1f}×" if r < 100 else f"{r:,.0f}×"


def gflops(values, workload, n_cases, per_case):
    """bpfast's median rate in GFLOP/s: values are samples/s or seconds per sweep."""
    med = statistics.median(values)
    return (med * per_case if workload.per_sample else n_cases * per_case / med) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description="bpfast vs NumPy, PyTorch and scikit-learn")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per tool (default 7)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workloads", nargs="+", default=[w.key for w in WORKLOADS] + ["W7"],
                        help="W1-W4 here, W7 (a recurrent net) by bench/recurrent.py")
    parser.add_argument("--isa", nargs="+", default=None,
                        help="kernel variants to time side by side: names, or 'all' for every "
                             f"one this CPU runs ({', '.join(_core.available_isas())}); default: "
                             "the one bpfast picks")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.smoke else 7)
    if args.isa is None:
        variants = [BpfastTool()]
    else:
        names = _core.available_isas() if args.isa == ["all"] else args.isa
        unknown = [n for n in names if n not in _core.available_isas()]
        if unknown:
            parser.error(f"this CPU does not run {unknown}; it runs {_core.available_isas()}")
        variants = [BpfastTool(n) for n in names]
    info = bpfast.build_info()
    names = ", ".join(v.isa or info["simd"] for v in variants)
    versions = [f"bpfast {bpfast.__version__} (OpenMP {info['openmp']}; variants {names})",
                f"numpy {np.__version__}", f"Python {platform.python_version()}"]
    comparisons = [t for t in COMPARISONS if t.available()]
    for t in comparisons:
        if t.name == "torch":
            import torch
            versions.append(f"torch {torch.__version__}")
        if t.name == "sklearn":
            import sklearn
            versions.append(f"scikit-learn {sklearn.__version__}")
    print(f"{cpu_name()} ({platform.machine()}, {os.cpu_count()} cores); " + ", ".join(versions))
    rates = {n: sgemm_rate(n, n=256 if args.smoke else 1024) for n in args.threads}
    print("NumPy sgemm on this CPU: " + ", ".join(f"{rate:.1f} GFLOP/s on {n} thread{'s' * (n > 1)}"
                                                   for n, rate in rates.items()))
    print(f"medians of {repeats} interleaved runs (min–max); W1/W2 in µs per sweep (lower is "
          "better), W3/W4 in samples per second (higher is better); float32\n")
    failed, bugs, missed = False, [], []
    for workload in [w for w in WORKLOADS if w.key in args.workloads]:
        checked = []
        n = (workload.smoke_cases if args.smoke else None) or workload.n_cases
        Xv, Tv = make_data(workload, min(n, 4 * (workload.batch_size or n)))
        for tool in variants + [t for t in comparisons if t.supports(workload)]:
            ok, e_tool, e_ref = verify(tool, workload, Xv, Tv)
            if ok:
                checked.append(tool)
            else:
                failed = True
                print(f"{workload.key}: {tool.name} DISAGREES with the reference "
                      f"(E {e_tool:.6g} vs {e_ref:.6g}); not reported", file=sys.stderr)
        mine = [t for t in checked if isinstance(t, BpfastTool)]
        others = [t.name for t in checked if not isinstance(t, BpfastTool)]
        per_case = flops_per_case(workload.make_net().topology)
        title = workload.title if n == workload.n_cases else \
            workload.title.replace(f"{workload.n_cases:,} cases", f"{n:,} cases (smoke)")
        print(f"### {workload.key}: {title}\n")
        print("| threads | variant | bpfast | GFLOP/s | " + " | ".join(others) + " | " +
              " | ".join(f"vs {o}" for o in others) + " | targets |")
        print("|" + "---|" * (5 + 2 * len(others)))
        for n_threads in args.threads:
            res = measure(workload, checked, n_threads, repeats, args.smoke)
            targets = TARGETS.get(workload.key, {}).get(n_threads, {})
            base = next((t for t in mine if t.isa == "baseline"), None)
            for tool in mine:
                ratios = {o: speedup(res[tool.name], res[o], workload.per_sample) for o in others}
                misses = [f"{o} {ratios[o]:.3g}× < {goal}×" for o, goal in targets.items()
                          if o in ratios and ratios[o] < goal]
                verdict = "- (smoke)" if args.smoke else \
                    "met" if not misses else "MISSED: " + "; ".join(misses)
                if misses and not args.smoke:  # (smoke sizes are too small to time)
                    missed.append(f"{workload.key} {tool.name} {n_threads}T: " + "; ".join(misses))
                print(f"| {n_threads} | {tool.isa or info['simd']} | "
                      f"{fmt(res[tool.name], workload.per_sample)} | "
                      f"{gflops(res[tool.name], workload, n, per_case):.1f} | " +
                      " | ".join(fmt(res[o], workload.per_sample) for o in others) + " | " +
                      " | ".join(ratio(ratios[o]) for o in others) + f" | {verdict} |")
                if base is not None and tool is not base and \
                        speedup(res[tool.name], res[base.name], workload.per_sample) < 1:
                    bugs.append(f"{workload.key}, {n_threads} thread(s): {tool.isa} is slower "
                                f"than baseline ({fmt(res[tool.name], workload.per_sample)} vs "
                                f"{fmt(res[base.name], workload.per_sample)})")
        print()
    recurrent_status = 0
    if "W7" in args.workloads:  # its own tools: a loop over time steps in NumPy and PyTorch
        import recurrent
        recurrent_status = recurrent.main(
            ["--repeats", str(repeats), "--isa"] + [v.isa or info["simd"] for v in variants] +
            (["--smoke"] if args.smoke else []))
        failed = failed or recurrent_status == 1
        if recurrent_status == 2:
            bugs.append("W7 (bench/recurrent.py printed it)")
    if any(t.name == "sklearn" for t in comparisons):
        print("sklearn trains the same nets with linear output units (it has no logistic output) "
              "at lr / 10 × batch size (it averages gradients; linear outputs diverge at the "
              "logistic nets' rate); it was checked against the reference doing exactly that.")
    for line in missed:
        print(f"target missed: {line}")
    for line in bugs if not args.smoke else []:  # (smoke sizes are too small to judge speed)
        print(f"BUG: a kernel variant slower than the baseline on its own CPU: {line}",
              file=sys.stderr)
    if failed:
        return 1
    return 2 if bugs and not args.smoke else 0


if __name__ == "__main__":
    sys.exit(main())
