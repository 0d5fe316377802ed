"""The compiled kernels against the float64 reference and against finite differences."""

import inspect

import numpy as np
import pytest

import bpfast
from bpfast import Layer, _core, reference
from conftest import ODD_SIZES, SMOOTH_ACTIVATIONS, assert_close, random_dag


def data(rng, net, n_rows):
    X = rng.normal(size=(n_rows, net.topology.n_input_cols))
    T = rng.uniform(size=(n_rows, net.topology.n_outputs))
    return X.astype(net.dtype), T.astype(net.dtype)


@pytest.mark.parametrize("name", ["forward", "loss_gradient", "evaluate", "update",
                                  "train"])
def test_core_and_reference_have_the_same_signatures(name):
    assert (inspect.signature(getattr(_core, name)) ==
            inspect.signature(getattr(reference, name)))


@pytest.mark.parametrize("case", range(30))
@pytest.mark.parametrize("n_rows", [1, 5, 300])
def test_forward_and_gradient_match_reference_on_random_dags(case, n_rows, dtype, isa):
    rng = np.random.default_rng(case)
    net = random_dag(rng, dtype=dtype, seed=case)
    X, T = data(rng, net, n_rows)
    ys = _core.forward(net.topology, net.params, X, all_layers=True)
    ys_ref = reference.forward(net.topology, net.params, X, all_layers=True)
    assert len(ys) == len(ys_ref) == net.topology.n_layers
    for y, y_ref in zip(ys, ys_ref):
        assert y.dtype == net.dtype
        assert_close(y, y_ref, dtype)
    for loss in ["sse", "dead_zone"]:
        T_loss = (T > 0.5).astype(net.dtype) if loss == "dead_zone" else T
        E, grad = _core.loss_gradient(net.topology, net.params, X, T_loss, loss=loss)
        E_ref, grad_ref = reference.loss_gradient(net.topology, net.params, X, T_loss, loss=loss)
        assert grad.dtype == net.dtype and grad.shape == (net.topology.n_params,)
        assert_close(E, E_ref, dtype)
        assert_close(grad, grad_ref, dtype)


@pytest.mark.parametrize("n_in,n_hidden,n_out", [(s, h, o) for s in ODD_SIZES for h in (1, 13)
                                                 for o in (1, 37)])
def test_chain_sizes_that_are_not_simd_multiples(n_in, n_hidden, n_out, dtype, isa):
    rng = np.random.default_rng(n_in * 100 + n_hidden * 10 + n_out)
    net = bpfast.Network([n_in, n_hidden, n_out], seed=1, dtype=dtype)
    X, T = data(rng, net, 7)
    E, grad = _core.loss_gradient(net.topology, net.params, X, T)
    E_ref, grad_ref = reference.loss_gradient(net.topology, net.params, X, T)
    assert_close(E, E_ref, dtype)
    assert_close(grad, grad_ref, dtype)


def check_gradient_and_threads(net, X, T, lr, batch_size):
    """The gradient against the reference, then two sweeps giving the same bits on 1 and 2
    threads and changing the weights."""
    dtype = net.dtype.name
    E, grad = _core.loss_gradient(net.topology, net.params, X, T)
    E_ref, grad_ref = reference.loss_gradient(net.topology, net.params, X, T)
    assert_close(E, E_ref, dtype)
    assert_close(grad, grad_ref, dtype)
    runs = []
    for n_threads in (1, 2):
        params, velocity = net.params.copy(), net.velocity.copy()
        _core.train(net.topology, params, velocity, X, T, [(2, lr, 0.9, 0.0, 0)],
                    batch_size=batch_size, n_threads=n_threads)
        runs.append(params)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], net.params)


def test_products_across_every_cache_block_match_reference(dtype, isa):
    """Shapes past every blocking of a product on every variant (csrc/kernels.inc.c): a K block
    is at most 341 terms, a block of lanes at most 512 and a block of rows at most 252. So 700
    inputs is several K blocks of the forward pass, 400 outputs of the input gradient's and 600
    cases of the weight gradient's; 400 outputs is several blocks of rows; 600 cases (forward)
    and 700 columns (weight gradient) are several blocks of lanes. Then two sweeps in batches of
    300 on 1 and 2 threads."""
    rng = np.random.default_rng(5)
    net = bpfast.Network([700, 140, 400], seed=2, dtype=dtype, init_range=0.05)
    X, T = data(rng, net, 600)
    check_gradient_and_threads(net, X, T, lr=1e-4, batch_size=300)


def test_input_gradient_packed_in_groups_of_rows_matches_reference(dtype, isa):
    """The input gradient's W^T is packed a group of rows at a time (kernels.inc.c,
    PACK_A_ROW_BLOCKS): 2,100 hidden units are several groups on every variant (the largest,
    avx512 float32, packs 2,040 rows at a time), and 70 cases several lane panels, which is what
    makes it pack. Then one sweep on 1 and 2 threads."""
    rng = np.random.default_rng(6)
    net = bpfast.Network([8, 2100, 20], seed=3, dtype=dtype, init_range=0.05)
    X, T = data(rng, net, 70)
    check_gradient_and_threads(net, X, T, lr=1e-3, batch_size=70)


@pytest.mark.parametrize("case", range(10))
def test_gradients_match_central_finite_differences(case, isa):
    rng = np.random.default_rng(100 + case)
    net = random_dag(rng, dtype="float64", seed=case)
    X, T = data(rng, net, 9)
    _, grad = reference.loss_gradient(net.topology, net.params, X, T)
    _, grad_core = _core.loss_gradient(net.topology, net.params, X, T)
    h = 1e-6
    numeric = np.empty_like(grad)
    for i in range(net.topology.n_params):
        p = net.params.copy()
        p[i] += h
        e_plus, _ = reference.loss_gradient(net.topology, p, X, T)
        p[i] -= 2 * h
        e_minus, _ = reference.loss_gradient(net.topology, p, X, T)
        numeric[i] = (e_plus - e_minus) / (2 * h)
    # Central differences are exact to O(h^2) ~ 1e-12 plus rounding of E / h ~ 1e-10 relative.
    scale = np.max(np.abs(numeric))
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7 * scale)
    np.testing.assert_allclose(grad_core, numeric, rtol=1e-6, atol=1e-7 * scale)


@pytest.mark.parametrize("case", range(5))
def test_float32_gradients_match_central_finite_differences(case, isa):
    """The float32 kernels against finite differences of their own float32 error. E rounds to
    ~1e-7 relative, so the step is large (h = 1e-2) and the check coarse: truncation error O(h^2)
    ~ 1e-4 and rounding ~1e-5 of the scale. It still catches a wrong sign, a missing term or a
    mis-indexed block, which are errors of order one. Smooth units only: a step of 1e-2 often
    crosses a ReLU's kink (the float64 check covers those with h = 1e-6)."""
    rng = np.random.default_rng(200 + case)
    net = random_dag(rng, dtype="float32", seed=case, activations=SMOOTH_ACTIVATIONS)
    X, T = data(rng, net, 9)
    _, grad = _core.loss_gradient(net.topology, net.params, X, T)
    h = np.float32(1e-2)
    numeric = np.empty(net.topology.n_params)
    for i in range(net.topology.n_params):
        p = net.params.copy()
        p[i] += h
        e_plus, _ = _core.loss_gradient(net.topology, p, X, T)
        p[i] -= 2 * h
        e_minus, _ = _core.loss_gradient(net.topology, p, X, T)
        numeric[i] = (e_plus - e_minus) / (2 * float(h))
    scale = np.max(np.abs(numeric))
    np.testing.assert_allclose(grad, numeric, rtol=2e-2, atol=2e-3 * scale)


def test_worked_example_one_logistic_unit():
    """A 1-1 net by hand. w = 0.5, b = 0, x = 2, d = 1:
    x_j = 0.5*2 + 0 = 1;  y = 1/(1+e^-1) = 0.7310585786;  E = ½(-0.2689414214)² = ½ 0.0723294881 = 0.0361647
    ∂E/∂x = (y-1) y (1-y) = -0.2689414214 * 0.1966119332 = -0.0528770928
    ∂E/∂w = ∂E/∂x * 2 = -0.1057541856,  ∂E/∂b = ∂E/∂x * 1 = -0.0528770928
    With lr=0.1, momentum=0.9 from rest: Δw = +0.0105754186, Δb = +0.0052877093."""
    net = bpfast.Network([1, 1], seed=0, dtype="float64")
    net.assign_params([0.5, 0.0])
    E, grad = _core.loss_gradient(net.topology, net.params, np.array([[2.0]]), np.array([[1.0]]))
    y = 1 / (1 + np.exp(-1.0))
    assert E == pytest.approx(0.5 * (y - 1) ** 2, rel=1e-14)
    assert E == pytest.approx(0.0361647, abs=1e-7)
    np.testing.assert_allclose(grad, [-0.1057541856, -0.0528770928], atol=1e-9)
    velocity = np.zeros(2)
    _core.update(net.params, velocity, grad, lr=0.1, momentum=0.9)
    np.testing.assert_allclose(net.params, [0.5105754186, 0.0052877093], atol=1e-9)


@pytest.mark.parametrize("n_params", [1, 7, 37, 1000])
@pytest.mark.parametrize("decay", [0.0, 0.002])
def test_update_matches_reference(n_params, decay, dtype, isa):
    rng = np.random.default_rng(n_params)
    p, v, g = (rng.normal(size=n_params).astype(dtype) for _ in range(3))
    p_ref, v_ref = p.astype(np.float64), v.astype(np.float64)
    n_decayed = n_params // 2
    kwargs = dict(lr=0.3, momentum=0.9, weight_decay=decay, n_decayed=n_decayed)
    _core.update(p, v, g, **kwargs)
    reference.update(p_ref, v_ref, g.astype(np.float64), **kwargs)
    assert_close(v, v_ref, dtype)
    assert_close(p, p_ref, dtype)


def test_dead_zone_counts_no_error_inside_the_zone():
    net = bpfast.Network([1, 1], seed=0, dtype="float64", activation="identity")
    net.assign_params([1.0, 0.0])  # y = x
    X = np.array([[0.9], [0.7], [0.1], [0.3]])
    T = np.array([[1.0], [1.0], [0.0], [0.0]])
    E, grad = _core.loss_gradient(net.topology, net.params, X, T, loss="dead_zone")
    # Only 0.7 (on, below 0.8) and 0.3 (off, above 0.2) count: ½(0.3² + 0.3²).
    assert E == pytest.approx(0.09, rel=1e-12)
    assert grad[1] == pytest.approx(-0.3 + 0.3, abs=1e-12)
    assert grad[0] == pytest.approx(-0.3 * 0.7 + 0.3 * 0.3, rel=1e-12)


def test_family_trees_net_is_a_dag_not_a_masked_dense_layer():
    from conftest import family_trees_net
    net = family_trees_net()
    assert net.weights("person_code", "person").shape == (6, 24)
    assert net.weights("relation_code", "relation").shape == (6, 12)
    assert net.weights("central", "person_code").shape == (12, 6)
    assert net.weights("central", "relation_code").shape == (12, 6)
    with pytest.raises(ValueError, match="its sources are"):
        net.weights("person_code", "relation")
    with pytest.raises(ValueError, match="not a computed layer"):
        net.weights("person", "relation")
    n_weights = 24 * 6 + 12 * 6 + 12 * 12 + 12 * 6 + 6 * 24
    assert net.topology.n_weights == n_weights
    assert net.topology.n_params == n_weights + 6 + 6 + 12 + 6 + 24


def test_weight_views_share_memory_with_the_arena():
    net = bpfast.Network([3, 2, 1], seed=0)
    w = net.weights("hidden1", "input")
    assert np.shares_memory(w, net.params)
    w[0, 0] = 1.25
    assert net.params[0] == np.float32(1.25)
    assert np.shares_memory(net.bias("output"), net.params)
    # Weights first, then biases: decay-without-biases is one contiguous range.
    assert net.topology.bias_block("hidden1")[0] == net.topology.n_weights


def test_layer_without_bias_has_no_bias_params(dtype):
    net = bpfast.Network(inputs={"a": 3}, layers=[Layer("h", 2, ["a"], bias=False),
                                                  Layer("o", 1, ["h", "a"])], dtype=dtype)
    assert net.bias("h") is None
    assert net.topology.n_params == 3 * 2 + 2 * 1 + 3 * 1 + 1


# The vectorised logistic against the exact one, over the whole range the units meet. float32: a
# few ulp of the result (float32 ulp at 1 is 6e-8); float64: a few ulp too.
LOGISTIC_MAX_ERROR = {"float32": 3e-7, "float64": 1e-15}


def test_fast_logistic_error_is_bounded(dtype, isa):
    x = np.concatenate([np.linspace(-120, 120, 200_001), [-1e30, -88.5, 0.0, 88.5, 1e30]])
    with np.errstate(over="ignore"):  # exp(1e30) is inf, and 1/(1+inf) = 0 is the exact answer
        exact = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    fast = _core.unit_function(x.astype(dtype), "logistic")
    assert fast.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(fast)) and np.all((fast >= 0) & (fast <= 1))
    abs_error = np.abs(fast.astype(np.float64) - exact)
    assert abs_error.max() <= LOGISTIC_MAX_ERROR[dtype]
    # Relative error where the value is small (the tail the dead zone and errors live in).
    tail = (exact > 1e-30) & (exact < 1e-3)
    assert np.max(abs_error[tail] / exact[tail]) <= 100 * LOGISTIC_MAX_ERROR[dtype]
    if dtype == "float32":
        # In ulps of the exact value as a float32, wherever that is a normal number, for the
        # inputs as they reach the kernel (rounded to float32; float64's exact values are
        # themselves float64 roundings, good to an ulp or two only): measured 2.4 with the
        # polynomial exp (baseline) and 2.7 with the table exp (avx2, avx512).
        with np.errstate(over="ignore"):
            exact = 1.0 / (1.0 + np.exp(-x.astype(dtype).astype(np.float64)))
        normal = exact >= np.finfo(np.float32).tiny
        ulps = np.abs(fast[normal] - exact[normal]) / np.spacing(exact[normal].astype(dtype))
        assert ulps.max() <= 4, ulps.max()


def test_logistic_propagates_nan():
    assert np.isnan(_core.unit_function(np.array([np.nan], dtype=np.float32), "logistic"))[0]


@pytest.mark.parametrize("n_rows", [1, 17, 9000])
def test_evaluate_matches_reference(n_rows, dtype):
    rng = np.random.default_rng(n_rows)
    net = bpfast.Network([5, 7, 3], seed=2, dtype=dtype)
    X, T = data(rng, net, n_rows)
    T = (T > 0.5).astype(dtype)
    # stop tolerances around the outputs' distances from their targets: one that some outputs
    # miss (within is False because of those alone) and one just above the largest
    distance = np.abs(net.predict(X).astype(np.float64) - T)
    middle, above = float(np.median(distance)), float(distance.max()) * 1.001
    outcomes = set()
    for loss, tol in (("sse", None), ("dead_zone", middle), ("sse", middle), ("sse", above),
                      ("dead_zone", above)):
        E, within = _core.evaluate(net.topology, net.params, X, T, loss=loss, stop_tol=tol)
        E_ref, within_ref = reference.evaluate(net.topology, net.params, X, T, loss=loss,
                                               stop_tol=tol)
        assert_close(E, E_ref, dtype)
        assert within == within_ref
        outcomes.add((tol is not None, bool(within_ref)))
        assert net.error(X, T, loss=loss) == pytest.approx(E, rel=1e-6)
    assert outcomes >= {(True, False), (True, True)}  # the test can say either
