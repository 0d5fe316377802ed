"""Shared tolerances and network factories for the tests."""

import contextlib
import signal

import numpy as np
import pytest

import bpfast
from bpfast import Layer

DTYPES = ["float32", "float64"]

# A shell's background job (and nohup) starts with SIGINT ignored, and the processes it starts
# inherit that: Python then installs no KeyboardInterrupt handler. The Ctrl-C tests need Python's
# own, here and in the child processes they interrupt (a caught signal is reset to the default at
# exec, so the children install theirs).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Kernel results vs the float64 reference. float32 carries ~6e-8 relative rounding per operation;
# sums over a few hundred terms of mixed sign lose up to ~1e-5 of the largest term, so float32
# compares against the scale of the whole result (atol = rtol * max |reference|), not elementwise.
TOL = {
    "float32": {"rtol": 1e-5},
    "float64": {"rtol": 1e-12},
}

# A debug build with AddressSanitizer and UBSan (.ci/sanitize). Its instrumented sweeps run many
# times slower and less evenly, and ASan keeps freed memory in quarantine, so tests of latency and
# of memory footprint need its own bounds or cannot measure there.
SANITIZED = "-fsanitize" in bpfast.build_info()["compile_args"]
# Ctrl-C must stop training within this many seconds (measured: ~25 ms shipped, 0.6-1.7 s
# instrumented; the interrupted run would otherwise take hours).
INTERRUPT_LATENCY = 5.0 if SANITIZED else 1.0

@pytest.fixture
def threads_used(monkeypatch):
    """The threads each Network fit or predict really ran on, in call order, with the work
    threshold below which they run on one thread lifted: the tests' nets are small, and a test of
    "the same bits on 1 and 2 threads" that ran both on one compared a run with itself."""
    from bpfast import _threads
    monkeypatch.setattr(_threads, "MIN_PARALLEL_WORK", 0)
    used = []
    real = _threads.threads_for

    def spy(n_threads, work):
        used.append(real(n_threads, work))
        return used[-1]
    monkeypatch.setattr(_threads, "threads_for", spy)
    return used


@contextlib.contextmanager
def killed_at_exit(proc):
    """Kill `proc` if it still runs when the block ends: a check that failed (an interrupt that
    was never caught) must not leave a training run of hours behind, on the cores of the tests
    that follow."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def interrupt_script(script, *args):
    """Run `script` (which prints "ready", then trains until interrupted and prints
    "caught <time.time()>" and "interrupted"); send it SIGINT half a second after "ready".
    Returns its stdout and how long the interrupt took to be caught (seconds)."""
    import signal
    import subprocess
    import sys
    import time
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with killed_at_exit(proc):
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted" in out
    return out, float(out.split("caught ")[1].split()[0]) - sent


# Layer sizes that are not multiples of any SIMD width (plus a few that are).
ODD_SIZES = [1, 2, 3, 7, 13, 37]


def assert_close(actual, expected, dtype, factor=1.0):
    """Elementwise within rtol, with an absolute floor of rtol times the largest expected value."""
    expected = np.asarray(expected, dtype=np.float64)
    rtol = TOL[dtype]["rtol"] * factor
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol,
                               atol=rtol * scale)


HIDDEN_ACTIVATIONS = [name for name, a in bpfast.units.ACTIVATIONS.items() if a.hidden]


SMOOTH_ACTIVATIONS = ["logistic", "tanh", "identity"]


def random_dag(rng, dtype="float64", seed=0, max_layers=4, activations=None):
    """A random layered DAG: 1-3 input groups, 1-max_layers computed layers, skips, odd sizes,
    every hidden activation (or those given), biases on and off. Every group and layer feeds something above it."""
    n_inputs = int(rng.integers(1, 4))
    inputs = {f"in{i}": int(rng.choice(ODD_SIZES)) for i in range(n_inputs)}
    names = list(inputs)
    unused = set(names)
    layers = []
    n_layers = int(rng.integers(1, max_layers + 1))
    for k in range(n_layers):
        name = f"layer{k}"
        last = k == n_layers - 1
        n_src = int(rng.integers(1, min(3, len(names)) + 1))
        sources = set(rng.choice(names, size=n_src, replace=False).tolist())
        if last:
            sources |= unused
        layers.append(Layer(name, int(rng.choice(ODD_SIZES)), sorted(sources),
                            activation=str(rng.choice(activations or HIDDEN_ACTIVATIONS)),
                            bias=bool(rng.integers(0, 2))))
        unused -= sources
        unused.add(name)
        names.append(name)
    return bpfast.Network(inputs=inputs, layers=layers, seed=seed, init_range=0.5, dtype=dtype)


def family_trees_net(dtype="float32", seed=0, init_range=0.3):
    """The paper's family-trees network: two input groups, each with its own encoding layer."""
    return bpfast.Network(
        inputs={"person": 24, "relation": 12},
        layers=[
            Layer("person_code", 6, ["person"]),
            Layer("relation_code", 6, ["relation"]),
            Layer("central", 12, ["person_code", "relation_code"]),
            Layer("decode", 6, ["central"]),
            Layer("output", 24, ["decode"]),
        ],
        seed=seed, dtype=dtype, init_range=init_range)


@pytest.fixture(params=DTYPES)
def dtype(request):
    return request.param


@pytest.fixture(params=__import__("bpfast")._core.available_isas())
def isa(request):
    """Run the test on each kernel variant this CPU supports (AVX-512, AVX2+FMA, baseline)."""
    from bpfast import _core
    before = bpfast.build_info()["simd"]
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(before)
