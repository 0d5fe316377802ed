"""Weight sharing (bpfast.Tie): tied blocks, connections mapped onto shared parameters, absent
connections; against the float64 reference, finite differences, on every kernel variant and
thread count; and everything else a network does (update, files, pickles, populations)."""

import pickle

import numpy as np
import pytest

import bpfast
from bpfast import Layer, Tie, Topology, _core, reference
from conftest import assert_close
from test_kernels import check_gradient_and_threads


def receptive_field_net(dtype="float64", seed=0, side=5, gradient="sum"):
    """A T-C style net: every hidden unit sees its own 3x3 window of a wrapped retina through one
    shared field and bias; a second hidden layer, and outputs fed by both (a skip)."""
    fields = bpfast.datasets.tc(side).fields
    n = len(fields)
    return bpfast.Network(
        inputs={"retina": side * side},
        layers=[Layer("field", n, ["retina"]), Layer("mix", 7, ["field"]),
                Layer("out", 3, ["mix", "field"])],
        ties=[Tie(weights=[("field", "retina")], index=fields, gradient=gradient),
              Tie(biases=["field"], index=np.zeros(n, dtype=np.int64), gradient=gradient)],
        seed=seed, dtype=dtype, init_range=0.5)


def tied_chain_net(dtype="float64", seed=0):
    """Three equal hidden layers whose layer-to-layer blocks are one matrix and whose biases are
    one vector (the paper's "average"), plus an untied input block."""
    return bpfast.Network(
        inputs={"x": 5},
        layers=[Layer("h1", 9, ["x"]), Layer("h2", 9, ["h1"]), Layer("h3", 9, ["h2"]),
                Layer("y", 2, ["h3", "h1"], activation="identity")],
        ties=[Tie(weights=[("h2", "h1"), ("h3", "h2")]),
              Tie(biases=["h1", "h2", "h3"], gradient="mean")],
        seed=seed, dtype=dtype, init_range=0.5)


def wide_tied_net(dtype="float64", seed=0):
    """Tied 45x45 blocks: runs longer than a chunk of the gradient's sum (SHARE_CHUNK), so every
    chunk boundary falls inside a run."""
    return bpfast.Network(
        inputs={"x": 30},
        layers=[Layer("h1", 45, ["x"]), Layer("h2", 45, ["h1"]), Layer("h3", 45, ["h2"]),
                Layer("y", 3, ["h3"])],
        ties=[Tie(weights=[("h2", "h1"), ("h3", "h2")], gradient="mean")],
        seed=seed, dtype=dtype, init_range=0.3)


def random_map_net(dtype="float64", seed=0):
    """Each connection of two blocks of different shapes mapped at random onto 6 shared
    parameters, about a third absent; the gradient a factor of the sum."""
    rng = np.random.default_rng(seed + 99)
    maps = [rng.integers(-1, 6, size=(11, 13)), rng.integers(-1, 6, size=(4, 11))]
    maps[0][0, :6] = np.arange(6)  # every shared parameter used
    return bpfast.Network(
        inputs={"x": 13},
        layers=[Layer("h", 11, ["x"], activation="tanh"), Layer("y", 4, ["h", "x"])],
        ties=[Tie(weights=[("h", "x"), ("y", "h")], index=maps, gradient=0.25)],
        seed=seed, dtype=dtype, init_range=0.5)


def absent_block_net(dtype="float64", seed=0):
    """A block whose connections are all absent (its layer passes nothing down through it, and
    is the first to write its source's gradient), beside a block with absent rows."""
    rows = -np.ones((6, 8), dtype=np.int64)
    rows[2:4] = np.arange(16).reshape(2, 8)
    return bpfast.Network(
        inputs={"x": 4},
        layers=[Layer("h", 8, ["x"]), Layer("g", 5, ["h"]), Layer("y", 6, ["g", "h"])],
        ties=[Tie(weights=[("y", "g"), ("y", "h")],
                  index=[-np.ones((6, 5), dtype=np.int64), rows])],
        seed=seed, dtype=dtype, init_range=0.5)


def recurrent_net(dtype="float64", seed=0):
    return bpfast.RecurrentNetwork(3, 6, 2, 4, output_feedback=True, gradient="mean",
                                   seed=seed, dtype=dtype, init_range=0.8)


NETS = {"receptive_field": receptive_field_net, "tied_chain": tied_chain_net,
        "wide_tied": wide_tied_net,
        "random_map": random_map_net, "absent_block": absent_block_net,
        "recurrent": recurrent_net}


def data(rng, net, n_rows):
    X = rng.uniform(size=(n_rows, net.topology.n_input_cols))
    T = rng.uniform(0.1, 0.9, size=(n_rows, net.topology.n_outputs))
    return X.astype(net.dtype), T.astype(net.dtype)


def as_given(net, X, T):
    """X and T as the net's fit takes them: sequences (n, T, width) for a recurrent net."""
    if isinstance(net, bpfast.RecurrentNetwork):
        return X.reshape(len(X), net.n_steps, -1), T.reshape(len(T), net.n_steps, -1)
    return X, T


@pytest.mark.parametrize("name", NETS)
def test_shared_parameters_are_fewer_and_every_one_is_used(name):
    topo = NETS[name]().topology
    assert topo.shared and topo.n_params < topo.n_dense
    present = topo.dense_param >= 0
    assert np.array_equal(np.unique(topo.dense_param[present]), np.arange(topo.n_params))
    # the runs are the map, in slot order
    rebuilt = np.full(topo.n_dense, -1)
    for slot, param, length in topo.share_runs:
        rebuilt[slot: slot + length] = np.arange(param, param + length)
    assert np.array_equal(rebuilt, topo.dense_param)
    assert (np.diff(topo.share_runs[:, 0]) > 0).all()
    # every run reaches the chunks of SHARE_CHUNK parameters it fills, in slot order
    from bpfast.topology import SHARE_CHUNK
    for c in range(len(topo.share_chunk_start) - 1):
        runs = topo.share_chunk_runs[topo.share_chunk_start[c]: topo.share_chunk_start[c + 1]]
        assert (np.diff(runs) > 0).all()
        lo, hi = c * SHARE_CHUNK, (c + 1) * SHARE_CHUNK
        for r, (slot, param, length) in enumerate(topo.share_runs):
            assert (r in runs) == (param < hi and param + length > lo)


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("n_rows", [1, 70])
def test_gradient_matches_reference_and_threads_agree(name, n_rows, dtype, isa):
    rng = np.random.default_rng(3)
    net = NETS[name](dtype=dtype, seed=1)
    X, T = data(rng, net, n_rows)
    check_gradient_and_threads(net, X, T, lr=1e-2, batch_size=n_rows)


@pytest.mark.parametrize("name", NETS)
def test_gradients_match_central_finite_differences(name, isa):
    rng = np.random.default_rng(4)
    net = NETS[name](seed=2)
    X, T = data(rng, net, 9)
    _, grad = _core.loss_gradient(net.topology, net.params, X, T)
    _, grad_ref = reference.loss_gradient(net.topology, net.params, X, T)
    scale = net.topology.share_scale if net.topology.share_scale is not None else 1.0
    n = net.topology.n_params
    # every parameter of the small nets; of wide_tied's 3,600, 400 spread over all of them plus
    # both sides of every chunk boundary of the gradient's sum (SHARE_CHUNK)
    from bpfast.topology import SHARE_CHUNK
    edges = [i for c in range(SHARE_CHUNK, n, SHARE_CHUNK) for i in (c - 1, c)]
    checked = np.arange(n) if n <= 400 else np.unique(np.concatenate(
        [np.linspace(0, n - 1, 400).astype(int), edges]))
    h = 1e-6
    numeric = np.empty(len(checked))
    for j, i in enumerate(checked):
        p = net.params.copy()
        p[i] += h
        e_plus, _ = _core.evaluate(net.topology, p, X, T)
        p[i] -= 2 * h
        e_minus, _ = _core.evaluate(net.topology, p, X, T)
        numeric[j] = (e_plus - e_minus) / (2 * h)
    # the gradient of a "mean" or factor tie is the derivative times its factor (share_scale)
    numeric *= scale if np.isscalar(scale) else scale[checked]
    # Central differences: O(h^2) truncation plus rounding of E / h, ~1e-10 relative.
    tol = 1e-7 * np.max(np.abs(numeric))
    np.testing.assert_allclose(grad[checked], numeric, rtol=1e-6, atol=tol)
    np.testing.assert_allclose(grad_ref[checked], numeric, rtol=1e-6, atol=tol)


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("batch_size", [None, 4])
def test_training_matches_the_reference_update_on_the_shared_parameters(name, batch_size, isa):
    """Momentum and decay change each shared parameter once: fit equals reference.train (which
    updates the parameters with their gathered gradient) over a few full- or mini-batch sweeps."""
    rng = np.random.default_rng(5)
    net = NETS[name](seed=3)
    X, T = data(rng, net, 10)
    params, velocity = net.params.copy(), net.velocity.copy()
    rng_state = np.array([net._shuffle_state], dtype=np.uint64)
    phases = [(6, 0.05, 0.9, 0.01, net.topology.n_weights, "momentum", 0.999, 1e-8, 0.0)]
    reference.train(net.topology, params, velocity, X, T, phases,
                    batch_size=batch_size or 10, rng_state=rng_state)
    net.fit(*as_given(net, X, T), lr=0.05, momentum=0.9, weight_decay=0.01, n_sweeps=6,
            batch_size=batch_size)
    assert_close(net.params, params, "float64", factor=100)
    assert_close(net.velocity, velocity, "float64", factor=100)


@pytest.mark.parametrize("name", NETS)
def test_fits_are_bitwise_the_same_on_any_thread_count(name, dtype, threads_used):
    X, T = data(np.random.default_rng(6), NETS[name](dtype=dtype), 300)
    runs = []
    for n_threads in (1, 2, 3):
        net = NETS[name](dtype=dtype, seed=4)
        net.fit(*as_given(net, X, T), lr=1e-3, n_sweeps=3, batch_size=64, n_threads=n_threads)
        assert threads_used[-1] == n_threads
        runs.append(net.params.copy())
    assert not np.array_equal(runs[0], NETS[name](dtype=dtype, seed=4).params)
    for run in runs[1:]:
        np.testing.assert_array_equal(runs[0], run)


def test_weights_are_the_dense_blocks_and_read_only():
    net = receptive_field_net()
    W = net.weights("field", "retina")
    fields = bpfast.datasets.tc(5).fields
    shared = net.params[:9]
    assert np.array_equal(W[fields >= 0], shared[fields[fields >= 0]])
    assert (W[fields < 0] == 0).all()  # absent connections stay absent
    assert not W.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        W[0, 0] = 1
    assert np.array_equal(net.bias("field"), np.full(len(fields), net.params[net.topology.n_weights]))
    # untied blocks stay what they were: views of their own parameters
    plain = bpfast.Network([3, 2, 1])
    assert plain.weights("hidden1", "input").flags.writeable


def test_an_untied_net_is_unchanged_by_the_sharing_tables():
    topo = Topology.chain([6, 2, 1])
    assert not topo.shared and topo.n_params == topo.n_dense == 17
    assert topo.dense_param is None and topo.share_scale is None


@pytest.mark.parametrize("name", NETS)
def test_save_load_and_pickle_round_trip(name, tmp_path):
    net = NETS[name](seed=5)
    rng = np.random.default_rng(7)
    X, T = as_given(net, *data(rng, net, 8))
    net.fit(X, T, n_sweeps=3)
    path = tmp_path / "net.bpf"
    net.save(path)
    for other in (bpfast.load(path), pickle.loads(pickle.dumps(net))):
        assert type(other) is type(net)
        assert other.topology == net.topology
        np.testing.assert_array_equal(other.params, net.params)
        np.testing.assert_array_equal(other.velocity, net.velocity)
        np.testing.assert_array_equal(other.predict(X), net.predict(X))


def test_a_file_with_bad_ties_is_refused_clearly(tmp_path):
    import json
    import zipfile
    net = tied_chain_net()
    path = tmp_path / "net.bpf"
    net.save(path)
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("bpfast.json"))
        arrays = {n: z.read(n) for n in z.namelist() if n != "bpfast.json"}
    assert meta["format_version"] == 3
    for bad, message in ((lambda m: m["topology"]["ties"][0].update(weights=[["h9", "h1"]]),
                          "not a computed layer"),
                         (lambda m: m["topology"]["ties"][1].update(index=[[1.5]]),
                          "lists of lists of integers"),
                         (lambda m: m["topology"]["ties"][1].pop("gradient"), "exactly the fields"),
                         (lambda m: m["topology"]["ties"][0].update(gradient="median"),
                          "gradient")):
        broken = json.loads(json.dumps(meta))
        bad(broken)
        target = tmp_path / "broken.bpf"
        with zipfile.ZipFile(target, "w") as z:
            z.writestr("bpfast.json", json.dumps(broken))
            for n, blob in arrays.items():
                z.writestr(n, blob)
        with pytest.raises(ValueError, match=message):
            bpfast.load(target)


def test_population_members_with_ties_train_as_networks_alone():
    rng = np.random.default_rng(8)
    spec = dict(inputs={"x": 5}, layers=[Layer("h1", 9, ["x"]), Layer("h2", 9, ["h1"]),
                                          Layer("y", 2, ["h2"])],
                ties=[Tie(weights=[("h1", "x")], index=np.tile([0, 1, 2, 3, -1], (9, 1))),
                      Tie(biases=["h1", "h2"])])
    X, T = rng.uniform(size=(12, 5)), rng.uniform(size=(12, 2))
    pop = bpfast.Population(seeds=[3, 4, 5], dtype="float64", **spec)
    result = pop.fit(X, T, lr=0.1, n_sweeps=20)
    assert result.engine == "members"  # the lanes take untied nets only
    for i, seed in enumerate([3, 4, 5]):
        alone = bpfast.Network(seed=seed, dtype="float64", **spec)
        alone.fit(X, T, lr=0.1, n_sweeps=20)
        np.testing.assert_array_equal(pop[i].params, alone.params)


@pytest.mark.parametrize("tie, message", [
    (dict(weights=[("h2", "h1")], biases=["h1"]), "exactly one"),
    (dict(), "exactly one"),
    (dict(weights=[("h2", "x")]), "not fed by"),
    (dict(weights=[("h2", "h1"), ("h2", "h1")]), "twice"),
    (dict(weights=[("h2", "h1"), ("y", "nobias")]), "one shape"),
    (dict(weights=[("h2", "h1")], index=np.zeros((3, 3), dtype=np.int64)), "shape"),
    (dict(weights=[("h2", "h1")], index=np.full((4, 4), 2)), "never uses"),
    (dict(weights=[("h2", "h1")], index=np.full((4, 4), 10**15)), "only 16 connections"),
    (dict(weights=[("h2", "h1")], index=np.full((4, 4), -2)), "-1"),
    (dict(weights=[("h2", "h1")], index=np.full((4, 4), 0.5)), "integers"),
    (dict(weights=[("h2", "h1")], index=np.full((4, 4), -1)), "at least one"),
    (dict(weights=[("h2", "h1")], gradient="median"), "gradient"),
    (dict(weights=[("h2", "h1")], gradient=-1.0), "gradient"),
    (dict(biases=["nobias"]), "no bias"),
    (dict(weights="h2"), "pairs"),
])
def test_bad_ties_are_refused_with_a_clear_message(tie, message):
    layers = [Layer("h1", 4, ["x"]), Layer("h2", 4, ["h1"]), Layer("nobias", 4, ["h2"], bias=False),
              Layer("y", 2, ["nobias"])]
    with pytest.raises((TypeError, ValueError), match=message):
        Topology({"x": 3}, layers, [Tie(**tie)])


def test_an_index_may_be_written_as_nested_lists_as_by_hand():
    # one map for every block, written as lists, was read as one map per row ("a Tie of 1
    # blocks needs one index array (for all) or 1, got 2")
    layers = [Layer("h", 2, ["x"]), Layer("out", 1, ["h"])]
    field = [[0, 1, 0], [1, 0, 1]]
    for as_array in (False, True):
        index = np.array(field) if as_array else field
        tie = Tie(weights=[("h", "x")], index=index)
        assert np.array_equal(tie.index[0], field)
        net = bpfast.Network(inputs={"x": 3}, layers=layers, ties=[tie])
        assert net.topology.n_params == 2 + 2 + 2 + 1  # 2 shared, the biases, h -> out, out
    assert np.array_equal(Tie(biases=["h"], index=[0, 0]).index[0], [0, 0])
    # one map per block, of other shapes, still reads as such
    two = Tie(weights=[("h", "x"), ("out", "h")], index=[field, [[0, 1]]])
    assert [m.shape for m in two.index] == [(2, 3), (1, 2)]


def test_a_block_cannot_be_in_two_ties():
    layers = [Layer("h1", 4, ["x"]), Layer("h2", 4, ["h1"]), Layer("y", 4, ["h2"])]
    with pytest.raises(ValueError, match="two Ties"):
        Topology({"x": 4}, layers, [Tie(weights=[("h2", "h1"), ("y", "h2")]),
                                    Tie(weights=[("y", "h2"), ("h1", "x")])])


def test_a_plain_network_still_refuses_nan_targets():
    """NaN targets mean "no target" only where a RecurrentNetwork masks steps; a feed-forward
    fit reports them as bad data."""
    net = bpfast.Network([2, 2, 1])
    with pytest.raises(ValueError, match="NaN"):
        net.fit([[0, 1]], [[np.nan]], n_sweeps=1)


def test_glorot_bounds_count_the_connections_a_unit_has():
    """A receptive-field unit has 9 inputs, not the retina's 25: its shared weights are drawn
    within sqrt(6 / (9 + 25)) (fan_out: the layer's 25 units, as for every net)."""
    fields = bpfast.datasets.tc(5).fields
    net = bpfast.Network(inputs={"retina": 25}, layers=[Layer("field", 25, ["retina"]),
                                                        Layer("out", 1, ["field"])],
                         ties=[Tie(weights=[("field", "retina")], index=fields)],
                         init="glorot", dtype="float64")
    bound = np.sqrt(6 / (9 + 25))
    shared = net.params[:9]
    assert np.abs(shared).max() <= bound and np.abs(shared).max() > bound / 3


def random_ties(rng, topo):
    """Random ties on a random DAG: equal-shaped blocks tied whole, single blocks' connections
    mapped at random onto a few parameters (some absent, some whole rows absent), equal-sized
    biases tied; each with a random gradient rule."""
    rules = ["sum", "mean", 0.5]
    blocks = {}
    for l in range(topo.n_inputs, topo.n_layers):
        for e in range(topo.src_start[l], topo.src_start[l + 1]):
            use = (topo.names[l], topo.names[topo.src_layer[e]])
            blocks.setdefault(topo.weight_block(*use)[1], []).append(use)
    ties = []
    for shape, uses in blocks.items():
        if len(uses) >= 2 and rng.random() < 0.7:
            ties.append(Tie(weights=uses, gradient=rules[rng.integers(3)]))
            continue
        for use in uses:
            if rng.random() < 0.5:
                k = int(rng.integers(1, 7))
                index = np.where(rng.random(shape) < 0.4, -1, rng.integers(0, k, size=shape))
                if shape[0] > 1 and rng.random() < 0.5:
                    index[int(rng.integers(shape[0]))] = -1  # a row of absent connections
                index.flat[:k] = np.arange(k)  # every shared parameter used
                ties.append(Tie(weights=[use], index=index, gradient=rules[rng.integers(3)]))
    sizes = {}
    for l, layer in enumerate(topo.layers, start=topo.n_inputs):
        if layer.bias:
            sizes.setdefault(int(topo.size[l]), []).append(layer.name)
    for names in sizes.values():
        if len(names) >= 2 and rng.random() < 0.7:
            ties.append(Tie(biases=names, gradient=rules[rng.integers(3)]))
    return ties


@pytest.mark.parametrize("case", range(25))
def test_random_ties_on_random_dags_match_the_reference(case, dtype, isa):
    from conftest import random_dag
    rng = np.random.default_rng(1000 + case)
    plain = random_dag(rng, dtype=dtype, seed=case, activations=["logistic", "tanh", "identity"])
    ties = random_ties(rng, plain.topology)
    if not ties:
        ties = [Tie(weights=[(plain.topology.layers[0].name, plain.topology.layers[0].sources[0])],
                    index=np.zeros(plain.topology.weight_block(
                        plain.topology.layers[0].name, plain.topology.layers[0].sources[0])[1],
                        dtype=np.int64))]
    net = bpfast.Network(inputs={n: int(plain.topology.size[i])
                                 for i, n in enumerate(plain.topology.input_names)},
                         layers=plain.topology.layers, ties=ties, seed=case, dtype=dtype,
                         init_range=0.5)
    X, T = data(rng, net, 23)
    check_gradient_and_threads(net, X, T, lr=1e-2, batch_size=23)
