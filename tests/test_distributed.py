"""Populations on a Dask cluster (a LocalCluster of two worker processes): the gathered result is
bit for bit the local one, and a worker killed mid-shard loses and duplicates nothing."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import bpfast

distributed = pytest.importorskip("distributed", reason="needs dask[distributed] (test extra)")

X, T = bpfast.datasets.symmetry()


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def fit_both(client, options, seeds=range(24), **fit):
    local = bpfast.Population([6, 2, 1], seeds=seeds, **options)
    remote = bpfast.Population([6, 2, 1], seeds=seeds, **options)
    expected = local.fit(X, T, **fit)
    got = remote.fit(X, T, client=client, **fit)
    return local, remote, expected, got


def assert_same(local, remote, expected, got):
    assert np.array_equal(local.params, remote.params)
    assert np.array_equal(local.velocity, remote.velocity)
    assert np.array_equal(local._shuffle, remote._shuffle)
    for field in ("n_sweeps", "stop_reason", "final_error", "solved"):
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field))
    if expected.errors is not None:
        np.testing.assert_array_equal(got.errors, expected.errors)
    assert got.engine == expected.engine


@pytest.mark.parametrize("fit", [
    dict(lr=[0.1, 0.3] * 12, n_sweeps=300, stop_tol=0.45, record_errors=True, shards=5),
    dict(lr=0.05, n_sweeps=40, batch_size=8, optimizer="adam")], ids=["lanes", "members"])
def test_a_sharded_fit_is_bit_for_bit_the_local_one(client, fit):
    assert_same(*fit_both(client, {}, **fit))


def test_per_member_data_and_weights_travel_with_their_shards(client):
    rng = np.random.default_rng(0)
    weights = rng.integers(0, 2, size=(10, 64)).astype(float)
    weights[:, 0] = 1  # none all zero
    Xm = np.broadcast_to(X, (10,) + X.shape) + rng.normal(0, 0.01, size=(10,) + X.shape)
    local = bpfast.Population([6, 2, 1], seeds=range(10))
    remote = bpfast.Population([6, 2, 1], seeds=range(10))
    expected = local.fit(Xm, T, sample_weight=weights, n_sweeps=50, record_errors=True)
    got = remote.fit(Xm, T, sample_weight=weights, n_sweeps=50, record_errors=True,
                     client=client, shards=3)
    assert_same(local, remote, expected, got)


class Reruns(distributed.diagnostics.plugin.SchedulerPlugin):
    """Counts the shards a worker's death sent back from processing to be run again."""

    name = "bpfast-reruns"

    def __init__(self):
        self.reruns = []

    def transition(self, key, start, finish, *args, **kwargs):
        if start == "processing" and finish in ("released", "waiting") and \
                "_train_shard" in str(key):
            self.reruns.append(str(key))


def test_a_killed_worker_loses_and_duplicates_nothing(client):
    """Kill a worker while it trains a shard: Dask runs the shard again on the other worker (or
    the restarted one), and every member ends as in the local run."""
    client.register_plugin(Reruns())
    seeds = range(64)
    fit = dict(n_sweeps=30000, shards=4)  # about half a second per shard
    local = bpfast.Population([6, 2, 1], seeds=seeds)
    expected = local.fit(X, T, **{k: v for k, v in fit.items() if k != "shards"})
    remote = bpfast.Population([6, 2, 1], seeds=seeds)
    outcome = {}
    runner = threading.Thread(
        target=lambda: outcome.setdefault("result", remote.fit(X, T, client=client, **fit)))
    runner.start()
    pids = client.run(os.getpid)
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        busy = [address for address, tasks in client.processing().items() if tasks]
        if busy:
            victim = busy[0]
        time.sleep(0.02)
    assert victim is not None, "no shard started"
    time.sleep(0.05)  # into the shard
    os.kill(pids[victim], signal.SIGKILL)
    runner.join(timeout=300)
    assert not runner.is_alive()
    reruns = client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.plugins[Reruns.name].reruns)
    assert reruns, "the killed worker's shard was not run again: it had finished before the kill"
    assert_same(local, remote, expected, outcome["result"])
