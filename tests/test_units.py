"""Today's units, losses and update rules (bpfast.units, csrc/units.inc.c): the C and Python lists
agree; every one against the float64 reference, by finite differences, on every kernel variant,
with the same bits on any thread count."""

import pickle

import numpy as np
import pytest

import bpfast
from bpfast import Layer, _core, reference, units
from conftest import HIDDEN_ACTIVATIONS, assert_close


def test_the_c_and_python_lists_name_the_same_units_and_losses_in_the_same_order():
    assert _core.ACTIVATION_NAMES == tuple(units.ACTIVATIONS)
    assert _core.LOSS_NAMES == tuple(units.LOSSES)
    assert set(_core.RULES) == set(bpfast.network.OPTIMIZERS)


# -- the vector math -----------------------------------------------------------------------------

# Largest errors allowed, in units of the dtype's epsilon times max(1, |exact|).
ULPS = {"tanh": 8, "log": 4, "relu": 0, "leaky_relu": 1, "identity": 0}


@pytest.mark.parametrize("name", ["tanh", "relu", "leaky_relu", "identity", "log"])
def test_vector_functions_are_within_a_few_ulp_of_numpy(name, dtype, isa):
    rng = np.random.default_rng(1)
    if name == "log":
        x = np.concatenate([rng.uniform(1e-7, 1, 50_000), np.geomspace(1e-37, 1e30, 5_000),
                            [1.0, 0.5, 2.0, np.sqrt(2), np.sqrt(0.5)]])
        exact = np.log(x.astype(dtype).astype(np.float64))
    else:
        x = np.concatenate([np.linspace(-30, 30, 100_001), [0.0, -0.0, 0.625, -0.625, 1e-30,
                                                            -1e-30, 1e30, -1e30]])
        exact = units.ACTIVATIONS[name].f(x.astype(dtype).astype(np.float64))
    got = _core.unit_function(x.astype(dtype), name)
    assert got.dtype == np.dtype(dtype)
    eps = float(np.finfo(dtype).eps)
    error = np.abs(got.astype(np.float64) - exact) / np.maximum(1.0, np.abs(exact))
    # The exact value rounded to the dtype is itself up to half an ulp away.
    assert error.max() <= (ULPS[name] + 0.5) * eps


def test_tanh_is_odd_bounded_and_propagates_nan(dtype, isa):
    x = np.linspace(-50, 50, 10_001).astype(dtype)
    y = _core.unit_function(x, "tanh")
    np.testing.assert_array_equal(y, -_core.unit_function(-x, "tanh"))
    assert np.all(np.abs(y) <= 1)
    nan = _core.unit_function(np.array([np.nan, 1.0], dtype=dtype), "tanh")
    assert np.isnan(nan[0]) and not np.isnan(nan[1])
    relu = _core.unit_function(np.array([np.nan, -1.0], dtype=dtype), "relu")
    assert np.isnan(relu[0]) and relu[1] == 0  # a NaN is not turned into 0


# -- losses and reductions against the reference ---------------------------------------------------

def classifier(output, dtype, hidden=("relu", "tanh"), n_in=7, n_out=5, seed=0):
    """Two input groups, a skip connection, the given hidden units and `output` units."""
    return bpfast.Network(
        inputs={"a": n_in, "b": 3},
        layers=[Layer("h1", 9, ["a"], activation=hidden[0]),
                Layer("h2", 17, ["h1", "b"], activation=hidden[1]),
                Layer("out", n_out, ["h2", "h1"], activation=output)],
        seed=seed, init_range=0.6, dtype=dtype)


def targets_for(output, rng, n_rows, n_out):
    if output == "softmax":
        return np.eye(n_out)[rng.integers(0, n_out, n_rows)]
    return rng.uniform(size=(n_rows, n_out))


SETUPS = [  # output units, loss
    ("softmax", "cross_entropy"),
    ("logistic", "cross_entropy"),
    ("logistic", "sse"),
    ("identity", "sse"),
    ("leaky_relu", "sse"),
]


@pytest.mark.parametrize("output,loss", SETUPS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_rows", [1, 13, 70])
def test_loss_and_gradient_match_reference(output, loss, reduction, weighted, n_rows, dtype, isa):
    rng = np.random.default_rng(n_rows)
    net = classifier(output, dtype, hidden=(HIDDEN_ACTIVATIONS[n_rows % len(HIDDEN_ACTIVATIONS)],
                                            "leaky_relu"))
    X = rng.normal(size=(n_rows, 10)).astype(dtype)
    T = targets_for(output, rng, n_rows, 5).astype(dtype)
    w = rng.uniform(0, 3, n_rows) * (rng.uniform(size=n_rows) > 0.2) if weighted else None
    if w is not None and not w.any():
        w[0] = 1.0
    kwargs = dict(loss=loss, reduction=reduction, sample_weight=w)
    E, grad = _core.loss_gradient(net.topology, net.params, X, T, **kwargs)
    E_ref, grad_ref = reference.loss_gradient(net.topology, net.params, X, T, **kwargs)
    assert_close(E, E_ref, dtype)
    assert_close(grad, grad_ref, dtype)
    E_eval, _ = _core.evaluate(net.topology, net.params, X, T, loss=loss, sample_weight=w)
    assert_close(E_eval, E_ref, dtype)
    ys = _core.forward(net.topology, net.params, X)
    assert_close(ys, reference.forward(net.topology, net.params, X), dtype)
    if output == "softmax":
        np.testing.assert_allclose(ys.sum(axis=1), 1, rtol=10 * np.finfo(dtype).eps)


def central_differences(net, X, T, kwargs, h=1e-6):
    """dE/dparams of the float64 reference's E by central differences of step h."""
    numeric = np.empty(net.topology.n_params)
    for i in range(net.topology.n_params):
        p = net.params.copy()
        p[i] += h
        e_plus, _ = reference.loss_gradient(net.topology, p, X, T, **kwargs)
        p[i] -= 2 * h
        e_minus, _ = reference.loss_gradient(net.topology, p, X, T, **kwargs)
        numeric[i] = (e_plus - e_minus) / (2 * h)
    return numeric


@pytest.mark.parametrize("output,loss", SETUPS)
@pytest.mark.parametrize("hidden", [("relu", "leaky_relu"), ("tanh", "logistic")])
def test_gradients_match_central_finite_differences(output, loss, hidden, isa):
    rng = np.random.default_rng(3)
    net = classifier(output, "float64", hidden=hidden, n_in=4, n_out=3)
    X = rng.normal(size=(6, 7))
    T = targets_for(output, rng, 6, 3)
    w = rng.uniform(0.5, 2, 6)
    kwargs = dict(loss=loss, reduction="mean", sample_weight=w)
    _, grad = _core.loss_gradient(net.topology, net.params, X, T, **kwargs)
    numeric = central_differences(net, X, T, kwargs) / w.sum()  # 'mean' scales the gradient, not E
    # As in test_kernels: O(h^2) truncation and ~1e-10 relative rounding of E / h. A ReLU kink
    # within h of a total input would break this; at these random inputs none is that close.
    scale = np.max(np.abs(numeric))
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7 * scale)


def test_softmax_cross_entropy_of_a_worked_example():
    """Two softmax outputs fed by one input with weights (1, -1), no biases, x = 1, d = (1, 0):
    totals (1, -1), y = (e, e^-1) / (e + e^-1) = (0.8807970780, 0.1192029220),
    E = -ln 0.8807970780 = 0.1269280110, dE/dx = y - d = (-0.1192029220, 0.1192029220),
    dE/dw = dE/dx * 1."""
    net = bpfast.Network(inputs={"x": 1}, layers=[Layer("out", 2, ["x"], activation="softmax",
                                                        bias=False)], dtype="float64")
    net.assign_params([1.0, -1.0])
    E, grad = _core.loss_gradient(net.topology, net.params, np.array([[1.0]]),
                                  np.array([[1.0, 0.0]]), loss="cross_entropy")
    assert E == pytest.approx(0.1269280110, abs=1e-9)
    np.testing.assert_allclose(grad, [-0.1192029220, 0.1192029220], atol=1e-9)


def test_a_case_of_weight_two_counts_as_that_case_twice_and_weight_zero_as_none(dtype, isa):
    rng = np.random.default_rng(4)
    net = classifier("softmax", dtype)
    X = rng.normal(size=(6, 10)).astype(dtype)
    T = targets_for("softmax", rng, 6, 5).astype(dtype)
    w = np.array([2.0, 1, 1, 0, 1, 1])
    rows = [0, 0, 1, 2, 4, 5]
    E_w, g_w = _core.loss_gradient(net.topology, net.params, X, T, loss="cross_entropy",
                                   sample_weight=w)
    E_r, g_r = _core.loss_gradient(net.topology, net.params, X[rows], T[rows],
                                   loss="cross_entropy")
    assert_close(E_w, E_r, dtype)
    assert_close(g_w, g_r, dtype)
    # ... and in the stop test: only the held-out case is far from its target
    T_near = net.predict(X).astype(np.float64)
    T_near[3] = np.where(T_near[3] > 0.5, 0.0, 1.0)
    T_near = T_near / T_near.sum(axis=1, keepdims=True)
    _, within = _core.evaluate(net.topology, net.params, X, T_near.astype(dtype),
                               loss="cross_entropy", stop_tol=0.01, sample_weight=w)
    _, within_all = _core.evaluate(net.topology, net.params, X, T_near.astype(dtype),
                                   loss="cross_entropy", stop_tol=0.01)
    assert within and not within_all


@pytest.mark.parametrize("options", [dict(momentum=0.9, weight_decay=0.01),
                                     dict(optimizer="adam", lr=0.01),
                                     dict(dropout=0.2, momentum=0.5)],
                         ids=["momentum-decay", "adam", "dropout"])
@pytest.mark.parametrize("batch_size", [1, 2])
def test_mini_batches_of_weight_zero_cases_change_nothing(options, batch_size, isa):
    # A batch whose cases all have weight 0 must be held out as if its cases were not there:
    # momentum, weight decay and Adam would otherwise move the weights on its zero gradient.
    # Without shuffling, the remaining cases then form the same batches in the same order.
    X, T = bpfast.datasets.symmetry()
    held_out = (np.arange(64) // batch_size) % 2 == 0  # every other batch of cases
    w = np.where(held_out, 0.0, 1.0)
    fits = []
    for data, weights in (((X, T), w), ((X[~held_out], T[~held_out]), None)):
        net = bpfast.Network([6, 2, 1], seed=1, dtype="float64")
        net.fit(*data, sample_weight=weights, batch_size=batch_size, shuffle=False, n_sweeps=3,
                **{"lr": 0.1, "evaluate": False, **options})
        fits.append(net.params)
    np.testing.assert_array_equal(fits[0], fits[1])


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_the_reference_holds_out_weight_zero_batches_as_the_core_does(dropout, isa):
    X, T = bpfast.datasets.symmetry()
    w = np.where((np.arange(64) // 4) % 3 == 0, 0.0, 1.0)  # every third batch of 4: weight 0
    net = bpfast.Network([6, 2, 1], seed=1, dtype="float64")
    phases = [(3, 0.1, 0.9, 0.01, net.topology.n_weights)]
    kwargs = dict(batch_size=4, shuffle=False, sample_weight=w, dropout=dropout, rng_state=7)
    p_ref, v_ref = net.params.copy(), net.velocity.copy()
    out = _core.train(net.topology, net.params, net.velocity, X, T, phases, **kwargs)
    out_ref = reference.train(net.topology, p_ref, v_ref, X, T, phases, **kwargs)
    np.testing.assert_allclose(net.params, p_ref, rtol=1e-12, atol=1e-14)
    assert out[5] == out_ref[5]  # the same dropout keys drawn: none for the held-out batches


# -- the small-nets loop agrees bit for bit ------------------------------------------------------

@pytest.mark.parametrize("loss,reduction,weighted", [("cross_entropy", "mean", True),
                                                     ("sse", "mean", False),
                                                     ("cross_entropy", "sum", False)])
def test_small_nets_loop_gives_the_same_bits_with_new_losses(loss, reduction, weighted, dtype,
                                                             isa, monkeypatch):
    rng = np.random.default_rng(5)
    net = bpfast.Network([6, 3, 2], activation="leaky_relu", output_activation="logistic",
                         dtype=dtype, seed=2)
    assert _core.small_net(net.topology, dtype)
    X = rng.uniform(size=(64, 6)).astype(dtype)
    T = (rng.uniform(size=(64, 2)) > 0.5).astype(dtype)
    w = rng.uniform(0, 2, 64) if weighted else None
    results = []
    for small in (True, False):
        monkeypatch.setattr(_core, "SMALL_NETS", small)
        results.append(_core.loss_gradient(net.topology, net.params, X, T, loss=loss,
                                           reduction=reduction, sample_weight=w))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_softmax_nets_never_take_the_small_nets_loop():
    net = bpfast.Network([6, 3, 2], output_activation="softmax")
    assert not _core.small_net(net.topology, "float32")


# -- update rules --------------------------------------------------------------------------------

@pytest.mark.parametrize("n_params", [1, 7, 37, 1000])
@pytest.mark.parametrize("clip_norm", [0.0, 0.5])
@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_adam_update_matches_reference(n_params, clip_norm, decay, dtype, isa):
    rng = np.random.default_rng(n_params)
    p = rng.normal(size=n_params).astype(dtype)
    state = np.concatenate([rng.normal(size=n_params), rng.uniform(size=n_params), [3.0]])
    state = state.astype(dtype)
    p_ref, state_ref = p.astype(np.float64), state.astype(np.float64)
    kwargs = dict(lr=0.01, momentum=0.9, weight_decay=decay, n_decayed=n_params // 2,
                  rule="adam", beta2=0.999, epsilon=1e-8, clip_norm=clip_norm)
    for _ in range(3):
        g = rng.normal(size=n_params).astype(dtype)
        assert not _core.update(p, state, g, **kwargs)
        reference.update(p_ref, state_ref, g.astype(np.float64), **kwargs)
    assert state[-1] == state_ref[-1] == 6
    assert_close(state, state_ref, dtype)
    assert_close(p, p_ref, dtype)


def test_clipping_scales_the_gradient_to_the_norm(dtype, isa):
    g = np.array([3.0, 4.0], dtype=dtype)  # norm 5
    for clip, expected in [(1.0, [-0.6, -0.8]), (10.0, [-3.0, -4.0])]:
        p, v = np.zeros(2, dtype=dtype), np.zeros(2, dtype=dtype)
        _core.update(p, v, g, lr=1.0, momentum=0.0, clip_norm=clip)
        np.testing.assert_allclose(p, expected, rtol=4 * np.finfo(dtype).eps)


def test_update_refuses_a_state_of_the_wrong_length():
    p = np.zeros(4)
    with pytest.raises(ValueError, match="state 9 values"):
        _core.update(p, np.zeros(4), p, lr=0.1, momentum=0.9, rule="adam")
    with pytest.raises(ValueError, match="rule must be one of"):
        _core.update(p, np.zeros(4), p, lr=0.1, momentum=0.9, rule="rmsprop")


# -- training: reference, threads, the Network API --------------------------------------------------

ADAM_PHASE = (3, 0.01, 0.9, 0.001, 10, "adam", 0.99, 1e-7, 2.0)


@pytest.mark.parametrize("batch_size", [5, 40])
def test_training_with_adam_cross_entropy_and_weights_matches_reference(batch_size, isa):
    rng = np.random.default_rng(6)
    net = classifier("softmax", "float64")
    X = rng.normal(size=(40, 10))
    T = targets_for("softmax", rng, 40, 5)
    w = rng.uniform(0, 2, 40)
    state = np.zeros(2 * net.topology.n_params + 1)
    kwargs = dict(batch_size=batch_size, loss="cross_entropy", reduction="mean", sample_weight=w,
                  rng_state=7)
    p_ref, s_ref = net.params.astype(np.float64), state.copy()
    out = _core.train(net.topology, net.params, state, X, T, [ADAM_PHASE], **kwargs)
    out_ref = reference.train(net.topology, p_ref, s_ref, X, T, [ADAM_PHASE], **kwargs)
    np.testing.assert_allclose(out[0], out_ref[0], rtol=1e-10)
    assert out[1:3] == out_ref[1:3] and out[5] == out_ref[5]
    np.testing.assert_allclose(net.params, p_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state, s_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rule", ["momentum", "adam"])
def test_new_options_give_the_same_bits_on_one_and_two_threads(rule, dtype, isa):
    rng = np.random.default_rng(8)
    net = bpfast.Network([300, 64, 10], activation="relu", output_activation="softmax",
                         dtype=dtype, seed=1, init_range=0.1)
    X = rng.normal(size=(200, 300)).astype(dtype)
    T = np.eye(10)[rng.integers(0, 10, 200)].astype(dtype)
    w = rng.uniform(0, 2, 200)
    n_state = 2 * net.topology.n_params + 1 if rule == "adam" else net.topology.n_params
    phase = (3, 0.01, 0.9, 0.0, 0, rule, 0.999, 1e-8, 1.0)
    runs = []
    for n_threads in (1, 2):
        params, state = net.params.copy(), np.zeros(n_state, dtype=dtype)
        _core.train(net.topology, params, state, X, T, [phase], batch_size=50,
                    loss="cross_entropy", reduction="mean", sample_weight=w, rng_state=3,
                    n_threads=n_threads)
        runs.append((params, state))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], net.params)


def blobs(rng, n=300, n_classes=3, dim=4):
    centres = rng.normal(scale=3, size=(n_classes, dim))
    labels = rng.integers(0, n_classes, n)
    return centres[labels] + rng.normal(size=(n, dim)), labels


@pytest.mark.parametrize("optimizer,lr", [("momentum", 0.1), ("adam", 0.01)])
def test_a_softmax_classifier_learns_separable_classes(optimizer, lr, dtype):
    rng = np.random.default_rng(9)
    X, labels = blobs(rng)
    net = bpfast.Network([4, 16, 3], activation="relu", output_activation="softmax", dtype=dtype)
    result = net.fit(X, np.eye(3)[labels], loss="cross_entropy", reduction="mean",
                     optimizer=optimizer, lr=lr, n_sweeps=50, batch_size=32)
    assert result.errors[-1] < 0.5 * result.errors[0]
    assert np.mean(net.predict(X).argmax(axis=1) == labels) > 0.95
    assert result.final_error == pytest.approx(
        net.error(X, np.eye(3)[labels], loss="cross_entropy", reduction="mean"), rel=1e-5)


def test_adam_state_survives_save_load_and_pickle(tmp_path, dtype):
    rng = np.random.default_rng(10)
    X, labels = blobs(rng, n=60)
    T = np.eye(3)[labels]
    net = bpfast.Network([4, 5, 3], output_activation="softmax", dtype=dtype)
    net.fit(X, T, loss="cross_entropy", optimizer="adam", lr=0.01, n_sweeps=5, batch_size=10)
    assert net.optimizer == "adam" and net.velocity.shape == (2 * net.topology.n_params + 1,)
    assert net.velocity[-1] == 30  # 5 sweeps of 6 batches
    for round_trip in ("save", "pickle"):
        if round_trip == "save":
            net.save(tmp_path / "net.bpfast")
            copy = bpfast.load(tmp_path / "net.bpfast")
        else:
            copy = pickle.loads(pickle.dumps(net))
        assert copy.optimizer == "adam"
        np.testing.assert_array_equal(copy.velocity, net.velocity)
        a = net.fit(X, T, loss="cross_entropy", optimizer="adam", lr=0.01, n_sweeps=2,
                    batch_size=10, evaluate=False)
        b = copy.fit(X, T, loss="cross_entropy", optimizer="adam", lr=0.01, n_sweeps=2,
                     batch_size=10, evaluate=False)
        np.testing.assert_array_equal(a.errors, b.errors)
        np.testing.assert_array_equal(net.params, copy.params)


def test_a_momentum_network_is_still_saved_in_format_version_one(tmp_path):
    import json
    import zipfile
    net = bpfast.Network([2, 2, 1])
    net.save(tmp_path / "net.bpfast")
    with zipfile.ZipFile(tmp_path / "net.bpfast") as archive:
        meta = json.loads(archive.read("bpfast.json"))
    assert meta["format_version"] == 1 and meta["optimizer"] == "momentum"


def test_switching_the_optimizer_starts_its_state_from_zero():
    X, T = bpfast.datasets.symmetry()
    net = bpfast.Network([6, 2, 1])
    net.fit(X, T, n_sweeps=3)
    assert net.velocity.any()
    net.fit(X, T, n_sweeps=0, optimizer="adam")
    assert net.velocity.shape == (2 * net.topology.n_params + 1,) and not net.velocity.any()
    net.fit(X, T, n_sweeps=2, optimizer="adam")
    assert net.velocity[-1] == 2
    net.fit(X, T, n_sweeps=0)
    assert net.optimizer == "momentum" and net.velocity.shape == (net.topology.n_params,)


# -- what the API refuses ------------------------------------------------------------------------

@pytest.mark.parametrize("make,fit,match", [
    (lambda: bpfast.Network(inputs={"a": 2}, layers=[Layer("h", 2, ["a"], activation="softmax"),
                                                      Layer("o", 1, ["h"])]), None,
     "softmax is for output layers only"),
    (lambda: bpfast.Network([2, 3], output_activation="softmax"), {"loss": "sse"},
     "softmax outputs are trained with loss='cross_entropy' only"),
    (lambda: bpfast.Network([2, 3], output_activation="tanh"), {"loss": "cross_entropy"},
     "needs output units that are one of"),
    (lambda: bpfast.Network([2, 3], output_activation="softmax"),
     {"loss": "cross_entropy", "T": np.full((4, 3), 0.5)}, "sums to 1"),
    (lambda: bpfast.Network([2, 3]), {"reduction": "average"}, "reduction must be one of"),
    (lambda: bpfast.Network([2, 3]), {"optimizer": "sgd"}, "optimizer must be one of"),
    (lambda: bpfast.Network([2, 3]), {"beta2": 1.0}, "beta2"),
    (lambda: bpfast.Network([2, 3]), {"epsilon": 0.0}, "epsilon"),
    (lambda: bpfast.Network([2, 3]), {"clip_norm": -1.0}, "clip_norm"),
    (lambda: bpfast.Network([2, 3]), {"sample_weight": [1, 1, 1]}, r"shape \(4,\)"),
    (lambda: bpfast.Network([2, 3]), {"sample_weight": [1, -1, 1, 1]}, ">= 0"),
    (lambda: bpfast.Network([2, 3]), {"sample_weight": [0, 0, 0, 0]}, "not all 0"),
    (lambda: bpfast.Network([2, 3]), {"sample_weight": [1, np.nan, 1, 1]}, "finite"),
    (lambda: bpfast.Network([2, 3]), {"sample_weight": ["a", "b", "c", "d"]}, "numbers"),
])
def test_bad_unit_loss_and_optimizer_choices_raise_saying_what_to_do(make, fit, match):
    with pytest.raises((ValueError, TypeError), match=match):
        net = make()
        options = dict(fit)
        T = options.pop("T", np.eye(3)[[0, 1, 2, 0]])
        net.fit(np.zeros((4, 2)), T, n_sweeps=1, **options)


# -- initialisations ------------------------------------------------------------------------------

@pytest.mark.parametrize("init", ["glorot", "he"])
def test_glorot_and_he_draw_each_layer_within_its_bound(init):
    net = bpfast.Network(inputs={"a": 30, "b": 10},
                         layers=[Layer("h", 50, ["a"], activation="relu"),
                                 Layer("out", 4, ["h", "b"])], init=init, seed=3)
    fan = {"h": (30, 50), "out": (60, 4)}
    for layer, sources in (("h", ["a"]), ("out", ["h", "b"])):
        fan_in, fan_out = fan[layer]
        bound = np.sqrt(6 / (fan_in + fan_out if init == "glorot" else fan_in))
        blocks = [net.weights(layer, s).ravel() for s in sources] + [net.bias(layer)]
        values = np.concatenate(blocks).astype(np.float64)
        assert np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.9 * bound  # the bound is used, not a smaller one
    twin = bpfast.Network(inputs={"a": 30, "b": 10},
                          layers=[Layer("h", 50, ["a"], activation="relu"),
                                  Layer("out", 4, ["h", "b"])], init=init, seed=3,
                          dtype="float64")
    np.testing.assert_array_equal(net.params, twin.params.astype(np.float32))


def test_the_init_is_kept_by_save_load_and_pickle(tmp_path):
    net = bpfast.Network([5, 3, 2], init="he")
    net.save(tmp_path / "net.bpfast")
    assert bpfast.load(tmp_path / "net.bpfast").init == "he"
    assert pickle.loads(pickle.dumps(net)).init == "he"
    with pytest.raises(ValueError, match="init must be one of"):
        bpfast.Network([5, 3, 2], init="xavier")


# -- dropout ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("n_rows", [1, 19, 70])
def test_dropout_gradient_matches_reference_masks_and_all(p, n_rows, dtype, isa):
    rng = np.random.default_rng(n_rows)
    net = classifier("softmax", dtype, hidden=("logistic", "relu"))
    X = rng.normal(size=(n_rows, 10)).astype(dtype)
    T = targets_for("softmax", rng, n_rows, 5).astype(dtype)
    kwargs = dict(loss="cross_entropy", dropout=p, dropout_key=12345)
    E, grad = _core.loss_gradient(net.topology, net.params, X, T, **kwargs)
    E_ref, grad_ref = reference.loss_gradient(net.topology, net.params, X, T, **kwargs)
    assert_close(E, E_ref, dtype)
    assert_close(grad, grad_ref, dtype)
    E_other, _ = _core.loss_gradient(net.topology, net.params, X, T, loss="cross_entropy",
                                     dropout=p, dropout_key=54321)
    E_none, _ = _core.loss_gradient(net.topology, net.params, X, T, loss="cross_entropy")
    assert E_other != E and E_none != E  # the key and the rate matter


def test_dropout_drops_the_fraction_asked_for():
    keep = reference._dropout_keep(7, 3, 200, 1000, 0.3)
    assert abs(1 - keep.mean() - 0.3) < 0.01


def test_dropout_gradient_matches_finite_differences_of_the_same_masks(isa):
    rng = np.random.default_rng(11)
    net = classifier("logistic", "float64", hidden=("tanh", "leaky_relu"), n_in=4, n_out=3)
    X = rng.normal(size=(6, 7))
    T = rng.uniform(size=(6, 3))
    kwargs = dict(loss="cross_entropy", dropout=0.4, dropout_key=99)
    _, grad = _core.loss_gradient(net.topology, net.params, X, T, **kwargs)
    numeric = central_differences(net, X, T, kwargs)
    scale = np.max(np.abs(numeric))
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7 * scale)


@pytest.mark.parametrize("batch_size", [7, 40])
def test_training_with_dropout_matches_reference_and_any_thread_count(batch_size, isa):
    rng = np.random.default_rng(12)
    net = classifier("softmax", "float64", hidden=("relu", "tanh"))
    X = rng.normal(size=(40, 10))
    T = targets_for("softmax", rng, 40, 5)
    phase = (3, 0.05, 0.9, 0.0, 0)
    kwargs = dict(batch_size=batch_size, loss="cross_entropy", dropout=0.3, rng_state=5,
                  stop_tol=0.01)
    p_ref, v_ref = net.params.copy(), net.velocity.copy()
    out_ref = reference.train(net.topology, p_ref, v_ref, X, T, [phase], **kwargs)
    for n_threads in (1, 2):
        params, velocity = net.params.copy(), net.velocity.copy()
        out = _core.train(net.topology, params, velocity, X, T, [phase], n_threads=n_threads,
                          **kwargs)
        np.testing.assert_allclose(out[0], out_ref[0], rtol=1e-10)
        assert out[1:3] == out_ref[1:3] and out[5] == out_ref[5]
        np.testing.assert_allclose(params, p_ref, rtol=1e-9, atol=1e-12)
        if n_threads == 1:
            first = params
        else:
            np.testing.assert_array_equal(params, first)


def test_network_fit_with_dropout_is_reproducible_and_predict_uses_every_unit():
    rng = np.random.default_rng(13)
    X, labels = blobs(rng)
    T = np.eye(3)[labels]
    runs = []
    for _ in range(2):
        net = bpfast.Network([4, 32, 3], activation="relu", output_activation="softmax", seed=4)
        net.fit(X, T, loss="cross_entropy", reduction="mean", lr=0.1, n_sweeps=30,
                batch_size=30, dropout=0.5)
        runs.append(net)
    np.testing.assert_array_equal(runs[0].params, runs[1].params)
    np.testing.assert_array_equal(runs[0].predict(X), runs[0].predict(X))  # no masks in predict
    assert np.mean(runs[0].predict(X).argmax(axis=1) == labels) > 0.95
    with pytest.raises(ValueError, match="dropout"):
        runs[0].fit(X, T, loss="cross_entropy", dropout=1.0)


# -- what review found (2026-11-30) ----------------------------------------------------------------

class _DeadlineOnSecondChunk:
    """A ThreadChooser stand-in whose second chunk gets a deadline that cuts its sweep short."""
    use_threads = False

    def __init__(self):
        self.calls = 0

    def chunk_size(self, chunk, left, now):
        return chunk

    def plan(self, chunk, left, now):
        self.calls += 1
        return (1, now + 0.003) if self.calls == 2 else (1, 0.0)

    def record(self, *args):
        pass


def test_a_full_batch_sweep_cut_short_under_dropout_puts_back_its_generator():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 200)).astype(np.float32)
    T = (rng.uniform(size=(4000, 10)) > 0.5).astype(np.float32)
    results = []
    for chooser in (None, _DeadlineOnSecondChunk()):
        net = bpfast.Network([200, 300, 10], seed=1)
        params, velocity, box = net.params.copy(), net.velocity.copy(), net._shuffle_box.copy()
        out = _core.run_training(net.topology, params, velocity, X, T, [(4, 1e-4, 0.9, 0.0, 0)],
                                 batch_size=4000, dropout=0.5, rng_state=box, n_threads=1,
                                 chooser=chooser)
        results.append((params, out[1], int(box[0])))
    assert results[0][1] == results[1][1] == 4
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][2] == results[1][2]


def test_adam_moments_that_overflow_are_reported_not_frozen():
    p = np.zeros(4, dtype=np.float32)
    state = np.zeros(9, dtype=np.float32)
    g = np.full(4, 1e20, dtype=np.float32)  # g * g overflows float32
    assert _core.update(p, state, g, lr=0.01, momentum=0.9, rule="adam")  # "became non-finite"
    assert np.isinf(state[4:8]).all() and np.isfinite(p).all()  # what it reports


def test_clipping_a_float32_gradient_whose_square_overflows():
    g = np.full(64, 1e19, dtype=np.float32)
    p, v = np.zeros(64, dtype=np.float32), np.zeros(64, dtype=np.float32)
    _core.update(p, v, g, lr=1.0, momentum=0.0, clip_norm=0.1)
    np.testing.assert_allclose(p, -0.1 / 8, rtol=1e-6)  # norm 8e19 scaled to 0.1


def test_a_refused_fit_keeps_the_optimiser_state_it_had(monkeypatch):
    X, T = bpfast.datasets.symmetry()
    net = bpfast.Network([6, 2, 1])
    net.fit(X, T, n_sweeps=3)
    before = net.velocity.copy()

    def no_memory(n_bytes, what):
        raise MemoryError(what)

    monkeypatch.setattr(bpfast.network, "check_fits", no_memory)
    with pytest.raises(MemoryError):
        net.fit(X, T, n_sweeps=3, optimizer="adam")
    assert net.optimizer == "momentum"
    np.testing.assert_array_equal(net.velocity, before)


def test_mean_reduction_reports_per_case_errors_to_the_callback_too():
    rng = np.random.default_rng(14)
    X, labels = blobs(rng, n=90)
    seen = []
    net = bpfast.Network([4, 5, 3], output_activation="softmax")
    result = net.fit(X, np.eye(3)[labels], loss="cross_entropy", reduction="mean", n_sweeps=4,
                     callback=lambda sweep, error: seen.append(error), callback_every=1)
    np.testing.assert_allclose(seen, result.errors)
    assert result.errors[0] < 2  # per case: about ln 3 at the start, not 90 times that


def test_a_pickled_adam_state_with_a_bad_update_count_is_refused():
    net = bpfast.Network([2, 2, 1])
    net.fit(np.zeros((4, 2)), np.zeros(4), optimizer="adam", n_sweeps=1)
    state = net.__getstate__()
    state["velocity"][-1] = -1
    with pytest.raises(ValueError, match="update count"):
        bpfast.Network.__new__(bpfast.Network).__setstate__(state)


def test_train_refuses_n_decayed_past_the_arena():
    net = bpfast.Network([2, 2, 1])
    with pytest.raises(ValueError, match="n_decayed"):
        _core.train(net.topology, net.params, net.velocity, np.zeros((4, 2), np.float32),
                    np.zeros((4, 1), np.float32), [(1, 0.1, 0.9, 0.01, 10**6)], batch_size=4)
