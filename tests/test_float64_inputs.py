"""A float32 net trains on a user's float64 X as it is: each case is rounded as it is bound, to the
numbers a float32 copy of X would hold, so the run is bit for bit the one on that copy, and no
copy of X is made. `predict` likewise rounds a chunk of rows at a time."""

import tracemalloc

import numpy as np
import pytest

import bpfast
from bpfast import Layer, _core

RNG = np.random.default_rng(0)


def assert_same_run(make, X, T, **fit):
    wide, narrow = make(), make()
    got = wide.fit(X, T, **fit)
    expected = narrow.fit(X.astype(np.float32), T, **fit)
    assert np.array_equal(wide.params, narrow.params)
    assert np.array_equal(wide.velocity, narrow.velocity)
    np.testing.assert_array_equal(got.errors, expected.errors)
    assert got.final_error == expected.final_error or \
        (np.isnan(got.final_error) and np.isnan(expected.final_error))
    assert got.n_sweeps == expected.n_sweeps and got.stop_reason == expected.stop_reason


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fit", [
    dict(n_sweeps=20), dict(n_sweeps=20, batch_size=64), dict(n_sweeps=3, batch_size=1),
    dict(n_sweeps=10, evaluate=False)],
    ids=["full batch", "mini-batch", "online", "no evaluation"])
def test_float64_x_trains_as_its_float32_copy(isa, threads, fit, threads_used):
    # 37 columns: whole vectors of the transposed binding and a scalar tail, on every variant;
    # batches of several vectors, so that each of two threads binds some of their rows
    X, T = RNG.normal(size=(203, 37)), RNG.uniform(size=(203, 5))
    assert_same_run(lambda: bpfast.Network([37, 20, 5], seed=1), X, T, n_threads=threads, **fit)
    assert threads_used and set(threads_used) == {threads}  # (online: the same, one case each)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_stop_rule_on_float64_x_stops_where_the_float32_copy_does(isa, threads, threads_used):
    """In mini-batch mode the stop test is a pass over every case, bound from X on its own: it
    must read the doubles too. The run has to stop by it, or nothing of that pass is compared."""
    X, T = bpfast.datasets.symmetry()
    X = X.astype(np.float64) + 0.0  # the patterns as float64, as a user would pass them
    fit = dict(lr=0.05, momentum=0.9, n_sweeps=5000, batch_size=8, stop_tol=0.3,
               n_threads=threads)
    assert_same_run(lambda: bpfast.Network([6, 2, 1], seed=1), X, T, **fit)
    assert bpfast.Network([6, 2, 1], seed=1).fit(X, T, **fit).stop_reason == "solved"


def test_wide_inputs_and_several_input_groups_bind_float64_alike(isa):
    """The batch-major copies of wide input groups and of several groups are made from the
    doubles too."""
    X, T = RNG.normal(size=(150, 300)), RNG.uniform(size=(150, 3))
    for fit in (dict(n_sweeps=5), dict(n_sweeps=5, batch_size=32)):
        assert_same_run(lambda: bpfast.Network([300, 17, 3], seed=2), X, T, **fit)
    for n_a in (4, 40):
        def make(n_a=n_a):
            return bpfast.Network(inputs={"a": n_a, "b": 3},
                                  layers=[Layer("h", 5, ["a", "b"]), Layer("o", 2, ["h", "a"])],
                                  seed=3)
        X, T = RNG.normal(size=(99, n_a + 3)), RNG.uniform(size=(99, 2))
        for fit in (dict(n_sweeps=7), dict(n_sweeps=7, batch_size=10)):
            assert_same_run(make, X, T, **fit)


def test_a_recurrent_net_trains_on_float64_sequences_as_on_float32():
    X, T = RNG.uniform(size=(6, 4, 3)), RNG.uniform(size=(6, 4, 2))

    def make():
        return bpfast.RecurrentNetwork(3, 5, 2, 4, seed=4)
    assert_same_run(make, X, T, n_sweeps=15)


def test_no_float32_copy_of_x_is_made():
    X, T = RNG.normal(size=(50_000, 100)), RNG.uniform(size=(50_000, 1)).astype(np.float32)
    net = bpfast.Network([100, 8, 1], seed=0)
    tracemalloc.start()
    try:
        net.fit(X, T, n_sweeps=1, batch_size=200)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    copy = X.size * 4
    assert peak < copy / 4, f"fit allocated {peak:,} bytes; a float32 copy of X is {copy:,}"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39, -3.5e38, 2.0**128 - 2.0**103])
def test_float64_values_that_are_not_finite_in_float32_are_refused(bad):
    X, T = RNG.normal(size=(10, 4)), RNG.uniform(size=(10, 1))
    X[3, 2] = bad
    net = bpfast.Network([4, 3, 1], seed=0)
    before = net.params.copy()
    with pytest.raises(ValueError, match=r"NaN or infinite in float32 \(first at row 3, column 2"):
        net.fit(X, T, n_sweeps=1)
    assert np.array_equal(net.params, before)


def test_the_largest_float64_values_that_round_to_finite_float32_are_taken():
    X, T = np.zeros((4, 2)), np.zeros((4, 1))
    X[0, 0] = np.nextafter(2.0**128 - 2.0**103, 0)  # rounds down to float32's largest value
    X[1, 1] = -X[0, 0]
    wide, narrow = bpfast.Network([2, 1], seed=0), bpfast.Network([2, 1], seed=0)
    wide.fit(X, T, n_sweeps=1, lr=1e-30)
    narrow.fit(X.astype(np.float32), T, n_sweeps=1, lr=1e-30)
    assert np.isfinite(X.astype(np.float32)).all()
    assert np.array_equal(wide.params, narrow.params)


def test_the_estimator_trains_on_float64_x_without_converting_it():
    sklearn = pytest.importorskip("sklearn", reason="needs scikit-learn (test extra)")
    del sklearn
    from bpfast.estimators import BPClassifier
    X = RNG.normal(size=(300, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    wide = BPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, y)
    narrow = BPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(
        X.astype(np.float32), y)
    assert np.array_equal(wide.network_.params, narrow.network_.params)


@pytest.mark.parametrize("threads", [1, 2])
def test_predict_on_float64_x_gives_the_outputs_of_its_float32_copy(isa, threads):
    # rows across two chunk boundaries and a short last chunk; 37 columns
    n = 2 * _core.FORWARD_CHUNK_ROWS + 5
    X = RNG.normal(size=(n, 37))
    net = bpfast.Network([37, 20, 5], seed=1)
    got = net.predict(X, n_threads=threads)
    assert got.dtype == np.float32
    assert np.array_equal(got, net.predict(X.astype(np.float32), n_threads=threads))
    # a non-contiguous float64 X is copied to float32 whole, as before: the same outputs
    assert np.array_equal(net.predict(np.asfortranarray(X), n_threads=threads), got)
    # every layer's activations (forward) round X whole: its inputs are float32 too
    layers = net.forward(X[:300], n_threads=threads)
    assert layers["input"].dtype == np.float32
    assert np.array_equal(layers[net.topology.names[-1]], got[:300])


def test_predict_makes_no_float32_copy_of_x():
    X = RNG.normal(size=(50_000, 100))
    net = bpfast.Network([100, 8, 1], seed=0)
    net.predict(X[:10])
    tracemalloc.start()
    try:
        net.predict(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    copy = X.size * 4
    assert peak < copy / 4, f"predict allocated {peak:,} bytes; a float32 copy of X is {copy:,}"


def test_predict_refuses_float64_values_that_are_not_finite_in_float32():
    X = RNG.normal(size=(10, 4))
    X[7, 1] = 1e39
    with pytest.raises(ValueError, match=r"NaN or infinite in float32 \(first at row 7, column 1"):
        bpfast.Network([4, 3, 1], seed=0).predict(X)


def test_the_estimator_predicts_on_float64_x_as_on_its_float32_copy():
    pytest.importorskip("sklearn", reason="needs scikit-learn (test extra)")
    from bpfast.estimators import BPClassifier
    X = RNG.normal(size=(300, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    clf = BPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, y)
    assert np.array_equal(clf.predict_proba(X), clf.predict_proba(X.astype(np.float32)))
