"""Whole training runs: trajectories against the reference, thread invariance, modes, stop rules."""

import numpy as np
import pytest

import bpfast
from bpfast import Phase, _core, reference
from bpfast._threads import threads_for
from conftest import assert_close, family_trees_net, random_dag


def run_both(net, X, T, phases, **kwargs):
    """Train `net` with the core and a float64 copy of its weights with the reference."""
    params_ref = net.params.astype(np.float64)
    velocity_ref = net.velocity.astype(np.float64)
    ref = reference.train(net.topology, params_ref, velocity_ref, X, T, phases,
                          rng_state=net._shuffle_state, **kwargs)
    core = _core.train(net.topology, net.params, net.velocity, X.astype(net.dtype),
                       T.astype(net.dtype), phases, rng_state=net._shuffle_state, **kwargs)
    return core, ref, params_ref


def family_trees_like_data(rng, n_rows=100):
    X = np.zeros((n_rows, 36))
    X[np.arange(n_rows), rng.integers(0, 24, n_rows)] = 1
    X[np.arange(n_rows), 24 + rng.integers(0, 12, n_rows)] = 1
    T = (rng.uniform(size=(n_rows, 24)) < 0.1).astype(float)
    return X, T


# Trajectories are compared with the kernel tolerances loosened by these factors: rounding
# differences (~6e-8 per step in float32, ~1e-16 in float64) are carried and amplified by 50 sweeps
# of momentum. 1e-3 (float32) and 1e-11 (float64) of the scale still catch any wrong update: a wrong
# sign or a missing decay or momentum term changes the results at the 1e-2 level or more.
TRAJECTORY_FACTOR = {"float32": 100.0, "float64": 10.0}


@pytest.mark.parametrize("mode", ["full", "minibatch", "online", "minibatch_in_order"])
def test_fifty_sweeps_with_momentum_and_decay_match_reference(mode, dtype, isa):
    rng = np.random.default_rng(7)
    net = family_trees_net(dtype=dtype, seed=3, init_range=1.0)
    X, T = family_trees_like_data(rng)
    batch = {"full": 100, "minibatch": 16, "online": 1, "minibatch_in_order": 30}[mode]
    n_decayed = net.topology.n_params  # decay biases too
    phases = [(20, 0.005, 0.5, 0.002, n_decayed), (30, 0.05, 0.9, 0.002, n_decayed)]
    if mode == "online":
        phases = [(5, 0.05, 0.5, 0.002, n_decayed), (5, 0.1, 0.9, 0.0, n_decayed)]
    core, ref, params_ref = run_both(net, X, T, phases, batch_size=batch,
                                     shuffle=mode != "minibatch_in_order", loss="dead_zone")
    errors, n_sweeps, status, final_error, _, rng_state = core
    assert n_sweeps == ref[1] == sum(p[0] for p in phases)
    assert status == ref[2] == "max_sweeps"
    assert rng_state == ref[5]
    factor = TRAJECTORY_FACTOR[dtype]
    assert_close(errors, ref[0], dtype, factor=factor)
    assert_close(final_error, ref[3], dtype, factor=factor)
    assert_close(net.params, params_ref, dtype, factor=factor)
    # The run must have moved: a trajectory that stands still would match trivially.
    assert abs(errors[-1] - errors[0]) > 0.01 * errors[0]


@pytest.mark.parametrize("case", range(5))
def test_random_dag_trajectory_with_sse_matches_reference(case, dtype):
    rng = np.random.default_rng(50 + case)
    net = random_dag(rng, dtype=dtype, seed=case)
    X = rng.normal(size=(23, net.topology.n_input_cols))
    T = rng.uniform(size=(23, net.topology.n_outputs))
    phases = [(50, 0.01, 0.9, 0.001, net.topology.n_weights)]
    core, ref, params_ref = run_both(net, X, T, phases, batch_size=23)
    assert_close(core[0], ref[0], dtype, factor=TRAJECTORY_FACTOR[dtype])
    assert_close(net.params, params_ref, dtype, factor=TRAJECTORY_FACTOR[dtype])


def train_mid_sized(n_threads, dtype, batch_size):
    rng = np.random.default_rng(0)
    net = bpfast.Network([40, 200, 80, 10], seed=1, dtype=dtype)
    X = rng.normal(size=(400, 40))
    T = rng.uniform(size=(400, 10))
    result = net.fit(X, T, lr=0.001, momentum=0.9, weight_decay=1e-4, n_sweeps=15,
                     batch_size=batch_size, n_threads=n_threads)
    return net, result


@pytest.mark.parametrize("batch_size", [None, 64])
def test_weights_are_bitwise_identical_for_1_2_and_4_threads(batch_size, dtype, isa):
    n_weights = 40 * 200 + 200 * 80 + 80 * 10
    # The configuration must really run in parallel, or this test proves nothing.
    assert threads_for(4, (batch_size or 400) * 3 * n_weights) == 4
    runs = [train_mid_sized(t, dtype, batch_size) for t in (1, 2, 4)]
    for net, result in runs[1:]:
        assert np.array_equal(net.params, runs[0][0].params)
        assert np.array_equal(net.velocity, runs[0][0].velocity)
        assert np.array_equal(result.errors, runs[0][1].errors)


@pytest.mark.parametrize("sizes, batch", [([13, 37, 5], 77), ([300, 7, 200], 50), ([40, 9, 3], 9)])
def test_every_tile_is_computed_once_whatever_the_threads_share(sizes, batch, dtype, isa,
                                                               threads_used):
    """product_omp gives each thread a run of tiles of equal work (kernels.inc.c: tile_at_work),
    not of equal count: runs end inside a lane panel or a row block, and with 3, 5 or 16 threads
    on a product of one or two tiles some threads get none. One thread computes every tile; any
    other count must give the same bits (a tile left out or done twice would not)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3 * batch, sizes[0]))
    T = rng.uniform(size=(3 * batch, sizes[-1]))
    runs = []
    for n_threads in (1, 2, 3, 5, 16):
        net = bpfast.Network(sizes, seed=4, dtype=dtype)
        result = net.fit(X, T, lr=0.01, momentum=0.9, n_sweeps=3, batch_size=batch,
                         n_threads=n_threads)
        assert threads_used[-1] == n_threads  # the fit really ran on them
        runs.append((net.params.copy(), result.errors, net.predict(X, n_threads=n_threads)))
    for params, errors, outputs in runs[1:]:
        assert np.array_equal(params, runs[0][0])
        assert np.array_equal(errors, runs[0][1])
        assert np.array_equal(outputs, runs[0][2])


def test_predict_is_bitwise_identical_across_thread_counts(dtype, isa):
    net = bpfast.Network([40, 300, 10], seed=2, dtype=dtype)
    X = np.random.default_rng(1).normal(size=(1000, 40))
    assert threads_for(4, 1000 * net.topology.n_weights) == 4
    outs = [net.predict(X, n_threads=t) for t in (1, 2, 4)]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_small_work_runs_on_one_thread():
    assert threads_for(8, 64 * 3 * (6 * 2 + 2 * 1)) == 1


def test_same_seed_same_weights_different_seed_different_weights(dtype):
    a, b, c = (bpfast.Network([5, 4, 3], seed=s, dtype=dtype) for s in (11, 11, 12))
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    assert np.all(np.abs(a.params) < 0.3)
    X, T = bpfast.datasets.symmetry(5)[0], np.ones((32, 3))
    for net in (a, b):
        net.fit(X, T, n_sweeps=30, batch_size=4)
    assert np.array_equal(a.params, b.params)


def test_float32_and_float64_nets_of_one_seed_start_alike():
    a = bpfast.Network([6, 2, 1], seed=5, dtype="float32")
    b = bpfast.Network([6, 2, 1], seed=5, dtype="float64")
    assert np.array_equal(a.params, b.params.astype(np.float32))


def test_schedule_is_one_call_and_carries_momentum():
    rng = np.random.default_rng(3)
    X, T = family_trees_like_data(rng)
    schedule = [Phase(20, lr=0.005, momentum=0.5, weight_decay=0.002),
                Phase(30, lr=0.01, momentum=0.9, weight_decay=0.002)]
    one = family_trees_net(dtype="float64", seed=0)
    result = one.fit(X, T, schedule=schedule)
    assert result.n_sweeps == 50 and len(result.errors) == 50
    two = family_trees_net(dtype="float64", seed=0)
    for p in schedule:  # velocity persists between fits, so two calls are the same run
        two.fit(X, T, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay,
                n_sweeps=p.n_sweeps)
    assert np.array_equal(one.params, two.params)
    fresh = family_trees_net(dtype="float64", seed=0)
    fresh.fit(X, T, schedule=schedule[:1])
    fresh.reset_velocity()
    fresh.fit(X, T, schedule=schedule[1:])
    assert not np.array_equal(one.params, fresh.params)


def test_decay_leaves_biases_alone_unless_asked():
    X, T = bpfast.datasets.symmetry(3)[0], np.zeros((8, 1))
    for decay_biases in (False, True):
        net = bpfast.Network([3, 1], seed=0, dtype="float64")
        before = net.params.copy()
        # lr tiny: the change is the decay itself.
        net.fit(X, T, lr=1e-300, momentum=0.0, weight_decay=0.5, n_sweeps=1,
                decay_biases=decay_biases)
        np.testing.assert_allclose(net.params[:3], before[:3] * 0.5)
        np.testing.assert_allclose(net.params[3], before[3] * (0.5 if decay_biases else 1.0))


def test_callback_runs_every_k_sweeps_and_can_stop(dtype):
    X, T = bpfast.datasets.symmetry()
    seen = []

    def callback(sweep, error):
        seen.append((sweep, error))
        return sweep >= 300

    net = bpfast.Network([6, 2, 1], seed=1, dtype=dtype)
    result = net.fit(X, T, n_sweeps=1000, callback=callback, callback_every=100)
    assert [s for s, _ in seen] == [100, 200, 300]
    assert result.n_sweeps == 300 and result.stop_reason == "stopped"
    assert seen[-1][1] == result.errors[-1]


def test_chunking_and_callbacks_do_not_change_the_result():
    X, T = bpfast.datasets.symmetry()
    a = bpfast.Network([6, 2, 1], seed=1)
    b = bpfast.Network([6, 2, 1], seed=1)
    ra = a.fit(X, T, n_sweeps=700)
    rb = b.fit(X, T, n_sweeps=700, callback=lambda s, e: None, callback_every=7)
    assert np.array_equal(a.params, b.params) and np.array_equal(ra.errors, rb.errors)


def test_stop_rule_stops_when_every_output_is_within_tol(dtype):
    X, T = bpfast.datasets.symmetry()
    net = bpfast.Network([6, 2, 1], seed=1, dtype=dtype)
    result = net.fit(X, T, n_sweeps=20000, stop_tol=0.2)
    assert result.stop_reason == "solved" and result.solved
    assert np.all(np.abs(net.predict(X) - T) < 0.2)
    # One sweep fewer and it was not yet solved: the rule fired at the first chance.
    again = bpfast.Network([6, 2, 1], seed=1, dtype=dtype)
    early = again.fit(X, T, n_sweeps=result.n_sweeps - 1, stop_tol=0.2)
    assert early.stop_reason == "max_sweeps" and not early.solved
    assert np.any(np.abs(again.predict(X) - T) >= 0.2)


def test_stop_rule_in_minibatch_mode_matches_reference():
    X, T = bpfast.datasets.symmetry()
    net = bpfast.Network([6, 2, 1], seed=1, dtype="float64")
    phases = [(5000, 0.02, 0.9, 0.0, 0)]
    core, ref, params_ref = run_both(net, X, T, phases, batch_size=8, stop_tol=0.2)
    assert core[2] == ref[2] == "solved"
    assert core[1] == ref[1]
    # 5,000 sweeps rather than 50: rounding grows with them, hence 1e-8 rather than 1e-11.
    assert_close(net.params, params_ref, "float64", factor=1e4)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("small_nets, case", [(True, 0), (True, 4), (True, 5), (False, 0),
                                              (False, 1), (False, 2)],
                         ids=["whole-net loop 0", "whole-net loop 4", "whole-net loop 5",
                              "layer kernels 0", "layer kernels 1", "layer kernels 2"])
def test_batches_of_every_stride_in_one_call_match_reference(case, n_threads, small_nets, isa,
                                                             monkeypatch):
    """Each bound batch lays out the workspace at its own row stride: here mini-batches of 37
    rows, a last one of 2, and the stop rule's evaluation of all 150 between sweeps, on nets
    with several input groups and skips, all in one compiled call. The whole-net loop's cases
    are nets it takes (cases 1 and 2 have an input group too wide for it)."""
    monkeypatch.setattr(_core, "SMALL_NETS", small_nets)
    rng = np.random.default_rng(90 + case)
    net = random_dag(rng, seed=case)
    if small_nets:
        assert _core.small_net(net.topology, net.dtype)
    X = rng.normal(size=(150, net.topology.n_input_cols))
    T = rng.uniform(size=(150, net.topology.n_outputs))
    phases = [(12, 0.01, 0.9, 0.0, 0)]
    core, ref, params_ref = run_both(net, X, T, phases, batch_size=37, stop_tol=1e-6,
                                     n_threads=n_threads)
    assert core[1] == ref[1] == 12 and core[2] == ref[2] == "max_sweeps"
    assert_close(core[0], ref[0], "float64", factor=TRAJECTORY_FACTOR["float64"])
    assert_close(net.params, params_ref, "float64", factor=TRAJECTORY_FACTOR["float64"])
    assert abs(core[0][-1] - core[0][0]) > 1e-3 * core[0][0]  # the run moved


def test_errors_are_the_sweep_errors_and_final_error_is_exact():
    X, T = bpfast.datasets.symmetry()
    net = bpfast.Network([6, 2, 1], seed=1, dtype="float64")
    start = net.error(X, T)
    result = net.fit(X, T, n_sweeps=10)
    assert result.errors[0] == pytest.approx(start, rel=1e-12)
    assert result.final_error == pytest.approx(net.error(X, T), rel=1e-12)


@pytest.mark.parametrize("batch_size", [None, 16])
def test_evaluate_false_skips_only_the_final_evaluation(batch_size):
    X, T = bpfast.datasets.symmetry()
    nets = [bpfast.Network([6, 2, 1], seed=1, dtype="float64") for _ in range(2)]
    full, skipped = (net.fit(X, T, n_sweeps=30, batch_size=batch_size, evaluate=flag)
                     for net, flag in zip(nets, (True, False)))
    np.testing.assert_array_equal(full.errors, skipped.errors)
    np.testing.assert_array_equal(nets[0].params, nets[1].params)
    np.testing.assert_array_equal(nets[0].velocity, nets[1].velocity)
    assert np.isfinite(full.final_error) and np.isnan(skipped.final_error)
    assert not skipped.solved and skipped.stop_reason == full.stop_reason == "max_sweeps"


def test_training_that_evaluates_nothing_holds_one_batch(monkeypatch):
    """Buffers for 8,192 cases serve only the passes over every case (the stop rule,
    final_error); without them a mini-batch fit budgets, and allocates, one batch, and trains to
    the same bits."""
    budgets = []
    monkeypatch.setattr(bpfast.network, "check_fits",
                        lambda n_bytes, what: budgets.append(what))
    rng = np.random.default_rng(4)
    X, T = rng.normal(size=(3000, 20)), rng.uniform(size=(3000, 3))
    nets = [bpfast.Network([20, 16, 3], seed=5) for _ in range(3)]
    nets[0].fit(X, T, batch_size=30, n_sweeps=2, evaluate=False)
    nets[1].fit(X, T, batch_size=30, n_sweeps=2)
    nets[2].fit(X, T, batch_size=30, n_sweeps=2, evaluate=False, stop_tol=1e-9)
    assert [w for w in budgets if w.startswith("training")] == [
        "training in batches of 30 rows", "training in batches of 3,000 rows",
        "training in batches of 3,000 rows"]
    assert np.array_equal(nets[0].params, nets[1].params)
    assert np.array_equal(nets[0].params, nets[2].params)


def test_evaluate_false_still_reports_a_solved_run():
    X, T = bpfast.datasets.xor()
    net = bpfast.Network([2, 2, 1], seed=3, dtype="float64")
    result = net.fit(X, T, lr=0.5, n_sweeps=20000, stop_tol=0.4, evaluate=False)
    assert result.stop_reason == "solved" and result.solved
    assert np.all(np.abs(net.predict(X) - T) < 0.4)


def test_evaluate_false_still_explains_a_divergence():
    rng = np.random.default_rng(0)
    net = bpfast.Network([4, 8, 2], seed=0, activation="identity", dtype="float32")
    X = rng.normal(size=(50, 4)) * 100
    with pytest.raises(FloatingPointError, match="smaller learning rate"):
        net.fit(X, rng.normal(size=(50, 2)), lr=10.0, n_sweeps=1000, evaluate=False)
    with pytest.raises(TypeError, match="evaluate"):
        net.fit(X, rng.normal(size=(50, 2)), evaluate="no")


def test_divergence_raises_floating_point_error():
    rng = np.random.default_rng(0)
    net = bpfast.Network([4, 8, 2], seed=0, activation="identity", dtype="float32")
    X = rng.normal(size=(50, 4)) * 100
    with pytest.raises(FloatingPointError, match="smaller learning rate"):
        net.fit(X, rng.normal(size=(50, 2)), lr=10.0, n_sweeps=1000)


def test_training_the_same_network_from_two_threads_is_refused():
    import threading
    X, T = bpfast.datasets.symmetry()
    net = bpfast.Network([6, 2, 1], seed=0)
    started = threading.Event()

    def slow_callback(sweep, error):
        started.set()
        return False

    def train():
        net.fit(X, T, n_sweeps=200000, callback=slow_callback, callback_every=10)

    thread = threading.Thread(target=train)
    thread.start()
    started.wait(10)
    try:
        with pytest.raises(RuntimeError, match="already being trained"):
            net.fit(X, T, n_sweeps=1)
    finally:
        thread.join()


def test_an_interrupted_fit_resumes_exactly():
    """An exception from the callback (as Ctrl-C) stops after a finished sweep; the weights,
    velocities and the shuffling state are all that sweep's, so fitting on gives the same run."""
    rng = np.random.default_rng(5)
    X, T = rng.uniform(size=(30, 4)), rng.uniform(size=(30, 2))
    straight = bpfast.Network([4, 5, 2], seed=3)
    straight.fit(X, T, n_sweeps=20, batch_size=4)

    def interrupt(sweep, error):
        raise KeyboardInterrupt

    interrupted = bpfast.Network([4, 5, 2], seed=3)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(X, T, n_sweeps=20, batch_size=4, callback=interrupt, callback_every=8)
    interrupted.fit(X, T, n_sweeps=12, batch_size=4)
    assert np.array_equal(interrupted.params, straight.params)
    assert interrupted._shuffle_state == straight._shuffle_state
