"""The whole-net loop for tiny nets (csrc/small_nets.inc.c) against the layer-by-layer kernels.

It performs the same operations in the same order, so the two must agree to the last bit: every
mode, loss, unit function and topology shape it accepts, on every kernel variant and thread count.
(Both are also checked against the reference: the small nets of test_kernels.py and
test_training.py take it.)"""

import numpy as np
import pytest

import bpfast
from bpfast import Layer, _core


def symmetry_net(dtype):
    return bpfast.Network([6, 2, 1], seed=4, dtype=dtype)


def encoder_net(dtype):
    return bpfast.Network([8, 3, 8], seed=5, dtype=dtype, init_range=1.0)


def dag_net(dtype):
    """Two input groups, a skip connection, a layer without bias, tanh and identity units."""
    return bpfast.Network(
        inputs={"a": 5, "b": 3},
        layers=[Layer("h1", 4, ["a"], activation="tanh"), Layer("h2", 3, ["h1", "b"], bias=False),
                Layer("out", 2, ["h2", "a", "h1"], activation="identity")],
        seed=6, dtype=dtype, init_range=0.7)


NETS = {"symmetry": symmetry_net, "encoder": encoder_net, "dag": dag_net}


def data(net, n_rows, seed=0):
    rng = np.random.default_rng(seed)
    topo = net.topology
    X = (rng.uniform(size=(n_rows, topo.n_input_cols)) < 0.5).astype(net.dtype)
    T = (rng.uniform(size=(n_rows, topo.n_outputs)) < 0.3).astype(net.dtype)
    return X, T


def train(net, X, T, small, monkeypatch, lr_scale=1.0, **kwargs):
    monkeypatch.setattr(_core, "SMALL_NETS", small)
    params, velocity = net.params.copy(), net.velocity.copy()
    result = _core.train(net.topology, params, velocity, X, T,
                         [(7, 0.3 * lr_scale, 0.5, 0.001, net.topology.n_params),
                          (8, 0.5 * lr_scale, 0.9, 0.0, 0)],
                         rng_state=11, **kwargs)
    return params, velocity, result


@pytest.mark.parametrize("name", NETS)
# 37 cases: a partial vector of lanes at the end of every batch; a full batch of 150: several whole
# spans (SPAN_VECTORS vectors) on every variant, then a shorter one
@pytest.mark.parametrize("mode, n_rows", [("full", 37), ("full", 150), ("minibatch", 37),
                                          ("online", 37)])
@pytest.mark.parametrize("loss", ["sse", "dead_zone", "sse, case weights", "sse, mean"])
def test_the_whole_net_loop_gives_the_same_bits_as_the_layer_kernels(name, mode, n_rows, loss,
                                                                     dtype, isa, monkeypatch):
    net = NETS[name](dtype)
    assert _core.small_net(net.topology, dtype)  # else this test compares a path with itself
    X, T = data(net, n_rows)
    batch = {"full": n_rows, "minibatch": 10, "online": 1}[mode]
    weights = np.random.default_rng(1).uniform(0, 2, n_rows) if "weights" in loss else None
    kwargs = dict(batch_size=batch, shuffle=mode != "full", loss=loss.split(",")[0],
                  reduction="mean" if "mean" in loss else "sum", sample_weight=weights,
                  stop_tol=None,
                  lr_scale=37 / n_rows)  # the summed gradient of more cases, the same steps
    small = train(net, X, T, True, monkeypatch, **kwargs)
    layered = train(net, X, T, False, monkeypatch, **kwargs)
    for a, b in zip(small[:2], layered[:2]):
        np.testing.assert_array_equal(a, b)
    errors_small, errors_layered = small[2][0], layered[2][0]
    np.testing.assert_array_equal(errors_small, errors_layered)
    assert small[2][1:] == layered[2][1:]
    assert abs(errors_small[-1] - errors_small[0]) > 1e-3 * errors_small[0]  # it trained


# (lr, stop_tol) with which each net, on stop_data's cases, meets its stop rule after some sweeps
STOP_RUNS = {"symmetry": (0.5, 0.3), "encoder": (0.05, 0.2), "dag": (0.005, 0.2)}


def stop_data(name, net):
    """21 cases whose targets the net can meet, from a teacher of its shape: its logistic
    outputs thresholded (the symmetry net's at their median, for both classes), the dag's linear
    ones halved, with noise."""
    X, _ = data(net, 21, seed=1)
    teacher = NETS[name](net.dtype.name)
    teacher.assign_params(teacher.params * {"symmetry": 10, "encoder": 3, "dag": 1}[name])
    out = teacher.predict(X)
    if name == "dag":
        T = out * 0.5 + 0.1 * np.random.default_rng(0).normal(size=out.shape)
    else:
        T = out > (np.median(out) if name == "symmetry" else 0.5)
    return X, T.astype(net.dtype)


@pytest.mark.parametrize("name", NETS)
def test_loss_gradient_and_the_stop_test_agree(name, dtype, isa, monkeypatch):
    net = NETS[name](dtype)
    X, T = data(net, 21, seed=1)
    X_stop, T_stop = stop_data(name, net)
    lr, tol = STOP_RUNS[name]
    results = []
    for small in (True, False):
        monkeypatch.setattr(_core, "SMALL_NETS", small)
        results.append(_core.loss_gradient(net.topology, net.params, X, T))
        # a stop rule both paths meet after the same sweep
        params, velocity = net.params.copy(), net.velocity.copy()
        results.append(_core.train(net.topology, params, velocity, X_stop, T_stop,
                                   [(5000, lr, 0.9, 0, 0)], batch_size=21, stop_tol=tol)[1:3])
    (e1, g1), stop1, (e2, g2), stop2 = results
    assert e1 == e2
    np.testing.assert_array_equal(g1, g2)
    assert stop1 == stop2
    # met, and not at once: the test said "not yet" for some sweeps, then "within"
    assert stop1[1] == "solved" and stop1[0] > 5


def test_the_whole_net_loop_is_the_same_on_any_thread_count(dtype, isa):
    net = symmetry_net(dtype)
    X, T = data(net, 64)
    runs = []
    for n_threads in (1, 2, 4):
        params, velocity = net.params.copy(), net.velocity.copy()
        _core.train(net.topology, params, velocity, X, T, [(50, 0.3, 0.9, 0, 0)], batch_size=64,
                    n_threads=n_threads)
        runs.append(params)
    for params in runs[1:]:
        np.testing.assert_array_equal(params, runs[0])


def test_nets_with_wide_sources_or_many_parameters_take_the_layer_kernels():
    for dtype in ("float32", "float64"):
        assert not _core.small_net(bpfast.Network([16, 2, 1], dtype=dtype).topology, dtype)
        assert not _core.small_net(bpfast.Network([7, 15, 15, 7], dtype=dtype).topology, dtype)
        assert _core.small_net(bpfast.Network([15, 2, 1], dtype=dtype).topology, dtype)
