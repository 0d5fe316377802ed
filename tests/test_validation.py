"""Bad input gets a clear error; unusual but valid input is converted, never misread."""

import numpy as np
import pytest

import bpfast
from bpfast import Layer, Phase


@pytest.fixture
def net(dtype):
    return bpfast.Network([6, 2, 1], seed=0, dtype=dtype)


@pytest.fixture
def data():
    return bpfast.datasets.symmetry()


def fitted_params(net, X, T):
    clone = bpfast.Network([6, 2, 1], seed=0, dtype=net.dtype)
    clone.fit(X, T, n_sweeps=20)
    return clone.params


def test_read_only_non_contiguous_float64_and_list_inputs_are_all_accepted(net, data):
    X, T = data
    expected = fitted_params(net, X, T)
    read_only = X.copy()
    read_only.flags.writeable = False
    fortran = np.asfortranarray(X)
    strided = np.repeat(X, 2, axis=1)[:, ::2]
    assert not strided.flags.c_contiguous
    for variant in (read_only, fortran, strided, X.tolist(), X.astype(np.int64), X.astype(bool)):
        clone = bpfast.Network([6, 2, 1], seed=0, dtype=net.dtype)
        clone.fit(variant, T.ravel().tolist(), n_sweeps=20)
        assert np.array_equal(clone.params, expected)
        np.testing.assert_array_equal(clone.predict(variant), clone.predict(X))


def test_memory_mapped_input_is_accepted(tmp_path, net, data):
    X, T = data
    path = tmp_path / "x.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    np.testing.assert_array_equal(net.predict(mapped), net.predict(X))


def test_predict_does_not_modify_or_keep_the_caller_array(net, data):
    X, _ = data
    before = X.copy()
    net.predict(X)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("X,match", [
    (np.zeros((64, 5)), "5 columns but the network has 6 inputs"),
    (np.zeros(6), "must be 2-D.*reshape"),
    (np.zeros((2, 3, 6)), "must be 2-D"),
    (np.zeros((0, 6)), "no rows"),
    (np.array([[0, 1, 2, 3, 4, np.nan]] * 64), "NaN or infinite.*row 0, column 5"),
    (np.array([[0, 1, 2, 3, 4, np.inf]] * 64), "NaN or infinite"),
])
def test_bad_inputs_raise_value_error_naming_the_problem(net, data, X, match):
    _, T = data
    with pytest.raises(ValueError, match=match):
        net.fit(X, T[: len(X)] if len(X) else T, n_sweeps=1)
    with pytest.raises(ValueError, match=match):
        net.predict(X)


def test_values_that_overflow_float32_are_rejected():
    net = bpfast.Network([6, 2, 1], dtype="float32")
    with pytest.raises(ValueError, match="infinite in float32"):
        net.predict(np.full((1, 6), 1e300))
    bpfast.Network([6, 2, 1], dtype="float64").predict(np.full((1, 6), 1e300))


@pytest.mark.parametrize("bad", [np.array([["a"] * 6]), np.zeros((1, 6), dtype=complex),
                                 np.array([[object()] * 6])])
def test_non_real_dtypes_raise_type_error(net, bad):
    with pytest.raises(TypeError, match="X must hold real numbers"):
        net.predict(bad)


def test_bad_targets_raise(net, data):
    X, T = data
    with pytest.raises(ValueError, match="T has 2 columns but the network has 1 output"):
        net.fit(X, np.zeros((64, 2)))
    with pytest.raises(ValueError, match="X has 64 rows but T has 63"):
        net.fit(X, T[:63])
    with pytest.raises(ValueError, match="T contains a value that is NaN"):
        net.fit(X, np.where(T == 1, np.nan, T))
    with pytest.raises(ValueError, match="dead_zone.*0 or 1"):
        net.fit(X, T * 0.5, loss="dead_zone")


def test_a_failed_fit_changes_nothing(net, data):
    X, T = data
    before = net.params.copy()
    with pytest.raises(ValueError):
        net.fit(X, T[:10])
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"lr": 0}, ValueError, "lr must be > 0"),
    ({"lr": -1}, ValueError, "lr must be > 0"),
    ({"lr": float("nan")}, ValueError, "lr must be finite"),
    ({"momentum": 1.0}, ValueError, "momentum must be < 1"),
    ({"momentum": -0.1}, ValueError, "momentum must be >= 0"),
    ({"weight_decay": 1.0}, ValueError, "weight_decay must be < 1"),
    ({"n_sweeps": -1}, ValueError, "n_sweeps must be >= 0"),
    ({"n_sweeps": 2.5}, TypeError, "n_sweeps must be an integer"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"loss": "mse"}, ValueError, "loss must be one of"),
    ({"dead_zone": (0.8, 0.2)}, ValueError, "off < on"),
    ({"dead_zone": 0.2}, ValueError, "dead_zone must be a pair"),
    ({"stop_tol": 0}, ValueError, "stop_tol must be > 0"),
    ({"n_threads": 0}, ValueError, "n_threads must be >= 1"),
    ({"n_threads": 10**6}, ValueError, "n_threads must be <= 1024"),
    ({"n_threads": "2"}, TypeError, "n_threads must be an integer"),
    ({"callback": 3}, TypeError, "callback must be callable"),
    ({"callback_every": 0}, ValueError, "callback_every must be >= 1"),
    ({"schedule": [Phase(5, 0.1)], "lr": 0.1}, ValueError, "either a schedule or"),
    ({"schedule": []}, TypeError, "non-empty list of bpfast.Phase"),
])
def test_bad_hyper_parameters_raise(net, data, kwargs, error, match):
    X, T = data
    with pytest.raises(error, match=match):
        net.fit(X, T, **kwargs)


@pytest.mark.parametrize("make,error,match", [
    (lambda: bpfast.Network([6]), ValueError, "at least an input size and an output size"),
    (lambda: bpfast.Network([6, 0, 1]), ValueError, "between 1 and"),
    (lambda: bpfast.Network([6, -2, 1]), ValueError, "between 1 and"),
    (lambda: bpfast.Network([6, 2.5, 1]), TypeError, "positive integer"),
    (lambda: bpfast.Network([6, 2**31, 1]), ValueError, "between 1 and"),
    (lambda: bpfast.Network([6, 2, 1], dtype="float16"), ValueError, "dtype must be"),
    (lambda: bpfast.Network([6, 2, 1], seed=-1), ValueError, "seed must be >= 0"),
    (lambda: bpfast.Network([6, 2, 1], init_range=float("inf")), ValueError, "finite"),
    (lambda: bpfast.Network(), ValueError, "describe the network"),
    (lambda: bpfast.Network(inputs={"a": 2}, layers=[Layer("h", 2, ["b"])]), ValueError,
     "source 'b' is not an input group or an earlier layer"),
    (lambda: bpfast.Network(inputs={"a": 2}, layers=[Layer("h", 2, ["a"]), Layer("o", 1, ["a"])]),
     ValueError, r"\['h'\] feed no layer above them"),
    (lambda: bpfast.Network(inputs={"a": 2}, layers=[Layer("a", 2, ["a"])]), ValueError,
     "unique"),
    (lambda: bpfast.Network(inputs={"a": 2}, layers=[Layer("h", 2, ["a", "a"])]), ValueError,
     "source twice"),
    (lambda: bpfast.Network(inputs={"a": 2}, layers=[Layer("h", 2, [])]), ValueError,
     "no sources"),
    (lambda: bpfast.Network(inputs={"a": 2}, layers=[Layer("h", 2, ["a"], activation="swish")]),
     ValueError, "unknown activation 'swish'"),
])
def test_bad_architectures_raise(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_inputs_as_a_dict_of_groups():
    net = bpfast.Network(inputs={"p": 3, "r": 2}, layers=[Layer("h", 4, ["p", "r"]),
                                                          Layer("o", 1, ["h"])], seed=0)
    rng = np.random.default_rng(0)
    P, R = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    np.testing.assert_array_equal(net.predict({"p": P, "r": R}), net.predict(np.hstack([P, R])))
    with pytest.raises(ValueError, match="missing \\['r'\\]"):
        net.predict({"p": P})
    with pytest.raises(ValueError, match="different numbers of rows"):
        net.predict({"p": P, "r": R[:4]})


def test_forward_returns_every_layer_by_name(net, data):
    X, _ = data
    acts = net.forward(X)
    assert list(acts) == ["input", "hidden1", "output"]
    np.testing.assert_array_equal(acts["output"], net.predict(X))
    assert acts["hidden1"].shape == (64, 2)


def test_the_weight_setter_does_not_take_scikit_learns_name(net):
    assert not hasattr(net, "set_params") and not hasattr(net, "get_params")


def test_assign_params_validates(net):
    with pytest.raises(ValueError, match="shape"):
        net.assign_params(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        net.assign_params(np.full(net.topology.n_params, np.nan))


def test_topology_tables_are_read_only():
    net = bpfast.Network([3, 2, 1])
    with pytest.raises(ValueError, match="read-only"):
        net.topology.size[1] = 1000


def test_fit_refuses_non_finite_weights_written_through_views(data):
    X, T = data
    net = bpfast.Network([6, 2, 1])
    net.weights("hidden1", "input")[0, 0] = np.nan
    with pytest.raises(ValueError, match="params or velocity contain NaN"):
        net.fit(X, T, n_sweeps=1)


def test_unpickling_an_inconsistent_network_raises():
    import pickle
    net = bpfast.Network([3, 2, 1])
    state = net.__getstate__()
    state["params"] = state["params"][:-1]
    clone = bpfast.Network.__new__(bpfast.Network)
    with pytest.raises(ValueError, match="params must be 11 finite values"):
        clone.__setstate__(state)
    assert pickle.loads(pickle.dumps(net)).topology == net.topology


def test_error_checks_dead_zone_targets(data):
    X, T = data
    net = bpfast.Network([6, 2, 1])
    with pytest.raises(ValueError, match="0 or 1"):
        net.error(X, T * 0.5, loss="dead_zone")
    assert net.error(X, T, loss="dead_zone") <= net.error(X, T)


def test_all_finite_is_exact_where_the_sum_overflows_or_cancels():
    from bpfast._validation import all_finite
    x = np.ones((50, 7), dtype=np.float32)
    assert all_finite(x)
    x[3, 2] = 3e38  # two of these overflow the sum, yet every value is finite
    x[4, 2] = 3e38
    assert all_finite(x)
    for bad in (np.inf, -np.inf, np.nan):
        y = x.copy()
        y[10, 5] = bad
        assert not all_finite(y)
    y = np.ones(9)
    y[[2, 6]] = [np.inf, -np.inf]  # the sum is NaN
    assert not all_finite(y)
    assert all_finite(np.arange(10))


@pytest.mark.parametrize("spec,expected", [("f4", np.float32), ("single", np.float32),
                                           (np.float32, np.float32), ("double", np.float64),
                                           ("f8", np.float64), (float, np.float64)])
def test_dtype_accepts_what_numpy_reads_as_float32_or_float64(spec, expected):
    assert bpfast.Network([6, 2, 1], dtype=spec).params.dtype == expected


@pytest.mark.parametrize("spec", ["int32", "f2", "nonsense", np.int64])
def test_other_dtypes_are_refused(spec):
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        bpfast.Network([6, 2, 1], dtype=spec)


def test_fit_result_repr_is_one_line(net, data):
    result = net.fit(*data, n_sweeps=50)
    text = repr(result)
    assert "\n" not in text and "n_sweeps=50" in text and "<50 values>" in text


@pytest.mark.parametrize("output,T,ok", [
    ("logistic", [[0.0], [1.0]], True), ("logistic", [[0.0], [2.0]], False),
    ("logistic", [[-0.5], [1.0]], False), ("tanh", [[-1.0], [1.0]], True),
    ("tanh", [[-1.0], [1.5]], False), ("identity", [[-7.0], [40.0]], True)])
def test_targets_an_output_unit_cannot_reach_are_refused(output, T, ok):
    net = bpfast.Network([6, 2, 1], seed=0, output_activation=output)
    X = np.zeros((2, 6))
    if ok:
        net.fit(X, T, n_sweeps=1)
    else:
        before = net.params.copy()
        with pytest.raises(ValueError, match="cannot reach.*output_activation='identity'"):
            net.fit(X, T, n_sweeps=1)
        np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("labels", [np.array([0, 2, 1, 2]), [0, 2, 1, 2], np.array([0., 2, 1, 2])])
def test_class_labels_for_several_outputs_get_the_one_hot_recipe(labels):
    net = bpfast.Network([6, 2, 3], seed=0)
    with pytest.raises(ValueError, match=r"class labels 0..2, one-hot encode them, "
                                         r"T = np.eye\(3\)\[labels\]"):
        net.fit(np.zeros((4, 6)), labels, n_sweeps=1)


def test_predict_before_fit_gives_the_initial_weights_outputs():
    net = bpfast.Network([6, 2, 1], seed=0, dtype="float64")
    X = np.random.default_rng(0).uniform(size=(5, 6))
    np.testing.assert_allclose(net.predict(X),
                               bpfast.reference.forward(net.topology, net.params, X), rtol=1e-12)
