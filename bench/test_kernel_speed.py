"""Kernel-level timings with pytest-benchmark (run separately from the tests):

    pytest bench/ --benchmark-columns=median,min,max

Each benchmark first checks the kernel's result against bpfast.reference, then times it:
a dense layer's forward pass, its forward + backward pass (loss and every gradient), the momentum
update over a 1M-parameter arena, and whole training sweeps of the paper's 6-2-1 net.
"""

import numpy as np
import pytest

import bpfast
from bpfast import _core, reference

RTOL = {"float32": 1e-4, "float64": 1e-10}


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


def dense(dtype, n_in=256, n_out=256, n_rows=256):
    net = bpfast.Network([n_in, n_out], seed=0, dtype=dtype, init_range=0.1)
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(n_rows, n_in)).astype(dtype)
    T = rng.uniform(size=(n_rows, n_out)).astype(dtype)
    return net, X, T


def test_dense_forward(benchmark, dtype):
    net, X, _ = dense(dtype)
    y = _core.forward(net.topology, net.params, X)
    np.testing.assert_allclose(y, reference.forward(net.topology, net.params, X), rtol=RTOL[dtype])
    benchmark(_core.forward, net.topology, net.params, X)


def test_dense_forward_backward(benchmark, dtype):
    net, X, T = dense(dtype)
    error, grad = _core.loss_gradient(net.topology, net.params, X, T)
    error_ref, grad_ref = reference.loss_gradient(net.topology, net.params, X, T)
    assert error == pytest.approx(error_ref, rel=RTOL[dtype])
    np.testing.assert_allclose(grad, grad_ref, rtol=RTOL[dtype], atol=RTOL[dtype] * np.abs(grad_ref).max())
    benchmark(_core.loss_gradient, net.topology, net.params, X, T)


def test_update(benchmark, dtype):
    rng = np.random.default_rng(0)
    p, v, g = (rng.normal(size=1_000_000).astype(dtype) for _ in range(3))
    p_ref, v_ref = p.astype(np.float64), v.astype(np.float64)
    kwargs = dict(lr=1e-3, momentum=0.9, weight_decay=2e-3, n_decayed=500_000)
    _core.update(p, v, g, **kwargs)
    reference.update(p_ref, v_ref, g.astype(np.float64), **kwargs)
    # Elementwise within rtol of the largest value, as in tests/conftest.py: where w + dw cancels,
    # float32's rounding of the operands dominates a tiny result.
    np.testing.assert_allclose(p, p_ref, rtol=RTOL[dtype], atol=RTOL[dtype] * np.abs(p_ref).max())
    benchmark(_core.update, p, v, g, **kwargs)


def test_symmetry_sweeps(benchmark, dtype):
    X, T = bpfast.datasets.symmetry()
    check = bpfast.Network([6, 2, 1], seed=1, dtype=dtype)
    result = check.fit(X, T, n_sweeps=100, n_threads=1)
    params_ref = bpfast.Network([6, 2, 1], seed=1, dtype=dtype).params.astype(np.float64)
    errors_ref = reference.train(check.topology, params_ref, np.zeros_like(params_ref), X, T,
                                 [(100, 0.1, 0.9, 0.0, 0)], batch_size=64)[0]
    np.testing.assert_allclose(result.errors, errors_ref, rtol=RTOL[dtype])
    net = bpfast.Network([6, 2, 1], seed=1, dtype=dtype)
    benchmark(net.fit, X, T, n_sweeps=1000, n_threads=1)
