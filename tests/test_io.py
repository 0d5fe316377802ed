"""Saving and loading: bitwise round trips, exact resumption, atomic writes, damaged files."""

import copy
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import bpfast
from bpfast import io as bpio
from conftest import family_trees_net


@pytest.fixture
def trained(dtype):
    net = family_trees_net(dtype=dtype, seed=4, init_range=1.0)
    rng = np.random.default_rng(0)
    X = np.eye(36)[rng.integers(0, 36, 50)] + np.eye(36)[rng.integers(0, 36, 50)]
    T = (rng.uniform(size=(50, 24)) < 0.1).astype(float)
    net.fit(X, T, n_sweeps=20, lr=0.01, batch_size=8)
    return net, X, T


def same_network(a, b):
    assert a.topology == b.topology and a.dtype == b.dtype and a.seed == b.seed
    assert a.params.dtype == b.params.dtype
    assert np.array_equal(a.params, b.params) and np.array_equal(a.velocity, b.velocity)
    assert a._shuffle_state == b._shuffle_state
    assert a._rng.bit_generator.state == b._rng.bit_generator.state


def test_round_trip_is_bitwise(tmp_path, trained):
    net, X, _ = trained
    net.save(tmp_path / "net.bpfast")
    loaded = bpfast.load(tmp_path / "net.bpfast")
    same_network(net, loaded)
    assert np.array_equal(net.predict(X), loaded.predict(X))


@pytest.mark.parametrize("batch_size", [None, 7])
def test_training_resumed_from_a_file_continues_exactly(tmp_path, dtype, batch_size):
    rng = np.random.default_rng(1)
    X, T = rng.uniform(size=(40, 5)), rng.uniform(size=(40, 3))
    straight = bpfast.Network([5, 4, 3], seed=2, dtype=dtype)
    straight.fit(X, T, n_sweeps=100, batch_size=batch_size, weight_decay=0.001)
    halves = bpfast.Network([5, 4, 3], seed=2, dtype=dtype)
    halves.fit(X, T, n_sweeps=50, batch_size=batch_size, weight_decay=0.001)
    halves.save(tmp_path / "half.bpfast")
    resumed = bpfast.load(tmp_path / "half.bpfast")
    resumed.fit(X, T, n_sweeps=50, batch_size=batch_size, weight_decay=0.001)
    same_network(straight, resumed)


def test_pickle_and_deepcopy_round_trip(trained):
    net, X, _ = trained
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        same_network(net, clone)
        assert not np.shares_memory(clone.params, net.params)
        assert np.array_equal(clone.predict(X), net.predict(X))


def _train_copy(net, X, T):
    net.fit(X, T, n_sweeps=5)
    return net.params


def test_networks_cross_process_boundaries(trained):
    from concurrent.futures import ProcessPoolExecutor
    net, X, T = trained
    with ProcessPoolExecutor(max_workers=2) as pool:
        remote = pool.submit(_train_copy, copy.deepcopy(net), X, T).result(timeout=120)
    assert np.array_equal(remote, _train_copy(copy.deepcopy(net), X, T))


def test_a_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch, trained):
    net, X, T = trained
    path = tmp_path / "net.bpfast"
    net.save(path)
    before = path.read_bytes()
    net.fit(X, T, n_sweeps=3)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    with pytest.raises(OSError, match="No space left"):
        net.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.bpfast"]  # no temporary file left behind
    assert not np.array_equal(bpfast.load(path).params, net.params)


def replace_member(path, name, data):
    """Rewrite the archive at `path` with member `name` replaced by `data` (bytes)."""
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as archive:
        for n, d in members.items():
            archive.writestr(n, d)


def rewrite(path, change):
    """Pass the archive's JSON description through `change`."""
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("bpfast.json"))
    change(meta)
    replace_member(path, "bpfast.json", json.dumps(meta).encode())


def npy_bytes(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.mark.parametrize("change,match", [
    (lambda m: m.update(format_version=99), "format version 99.*Upgrade bpfast"),
    (lambda m: m.update(format_version="1"), "invalid format_version"),
    (lambda m: m.update(format="something-else"), "not a bpfast network file"),
    (lambda m: m.update(dtype="float16"), "invalid network description"),
    (lambda m: m.update(n_params=3), "n_params 3 does not match"),
    (lambda m: m["topology"]["layers"][0].update(sources=["nobody"]), "invalid network description"),
    (lambda m: m["topology"]["layers"][0].update(size=-4), "invalid network description"),
    (lambda m: m["topology"]["layers"][2].update(size=13), "invalid network description|shape"),
    (lambda m: m.pop("rng_state"), "invalid network description"),
    (lambda m: m.update(shuffle_state=-1), "invalid network description"),
    (lambda m: m.update(seed=-5), "seed must be >= 0"),
    (lambda m: m.update(init_range=float("nan")), "init_range must be finite"),
])
def test_hand_edited_descriptions_raise_value_error(tmp_path, trained, change, match):
    net, _, _ = trained
    path = tmp_path / "net.bpfast"
    net.save(path)
    rewrite(path, change)
    with pytest.raises(ValueError, match=match):
        bpfast.load(path)


def test_truncated_files_raise_value_error(tmp_path, trained):
    net, _, _ = trained
    path = tmp_path / "net.bpfast"
    net.save(path)
    data = path.read_bytes()
    for cut in (0, 1, 10, 100, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="net.bpfast"):
            bpfast.load(path)


def test_corrupted_bytes_raise_value_error(tmp_path, trained):
    net, _, _ = trained
    path = tmp_path / "net.bpfast"
    net.save(path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    failures = 0
    for _ in range(50):
        damaged = bytearray(data)
        position = int(rng.integers(0, len(damaged)))
        damaged[position] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            loaded = bpfast.load(path)
        except ValueError:
            failures += 1
            continue
        # A flip the format cannot notice (zip padding) must still give the same network.
        assert np.array_equal(loaded.params, net.params)
    assert failures >= 45


def test_foreign_and_malicious_files_are_refused(tmp_path, trained):
    net, _, _ = trained
    path = tmp_path / "x.bpfast"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a bpfast file"):
        bpfast.load(path)
    path.write_bytes(pickle.dumps(net))
    with pytest.raises(ValueError, match="not a bpfast file"):
        bpfast.load(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("other.txt", "hello")
    with pytest.raises(ValueError, match="no bpfast.json"):
        bpfast.load(path)
    # An object array (which only pickle could read) in place of the parameters.
    net.save(path)
    replace_member(path, "params.npy",
                   npy_bytes(np.array([object()] * net.topology.n_params), allow_pickle=True))
    with pytest.raises(ValueError, match="params.npy is not a plain numeric array"):
        bpfast.load(path)


def test_non_finite_saved_values_are_refused(tmp_path, trained):
    net, _, _ = trained
    path = tmp_path / "net.bpfast"
    net.save(path)
    bad = net.velocity.copy()
    bad[3] = np.nan
    replace_member(path, "velocity.npy", npy_bytes(bad))
    with pytest.raises(ValueError, match="velocity.npy contains NaN"):
        bpfast.load(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        bpfast.load(tmp_path / "nothing.bpfast")


def test_save_rejects_non_networks(tmp_path):
    with pytest.raises(TypeError, match="bpfast.Network"):
        bpio.save("not a net", tmp_path / "x")
