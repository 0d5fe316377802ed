"""Training a population on a Dask cluster: ``Population.fit(..., client=client)``.

The members are split into shards; each shard is a sub-population trained by one task on a
worker, exactly as the local fit would train those members (every member is independent of the
others, and of which process or how many threads train it), so the gathered result is bit for bit
the local one. Shared data go to the workers once (scattered); a member's own data travel with its
shard.

A worker that dies takes its running tasks with it; Dask's scheduler runs them again on another
worker (up to its ``distributed.scheduler.allowed-failures`` times) from the shard's start, which
the task received as its input, so nothing is lost and each member's result arrives once. Needs
``dask[distributed]`` (``pip install 'bpfast[distributed]'``); nothing else in bpfast imports it.

    from dask.distributed import Client
    client = Client("tcp://scheduler-host:8786")      # a running cluster's scheduler
    pop = bpfast.Population([6, 2, 1], seeds=range(100_000))
    result = pop.fit(X, T, n_sweeps=2000, stop_tol=0.2, client=client)
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from ._validation import check_int


def _train_shard(sub, plan, X, T, n_threads, progress):
    """On a worker: train a shard (a sub-population) by its plan; return it and its result."""
    from . import _threads
    if n_threads is None:  # the worker's own threads, not every core of its machine
        try:
            from distributed import get_worker
            n_threads = get_worker().state.nthreads
        except (ImportError, ValueError, AttributeError):
            n_threads = None
    threads = _threads.usable_threads(_threads.requested_threads(n_threads), False)
    result = sub._execute(dataclasses.replace(plan, X=X, T=T), threads, progress)
    return sub, result


def fit_sharded(pop, client, plan, n_threads, shards, progress):
    """Population.fit on `client`'s cluster (see Population.fit)."""
    from .population import PopulationResult
    try:
        from distributed import as_completed
    except ImportError:  # a client was passed, so dask is there; distributed is its scheduler
        raise ImportError("training on a cluster needs dask.distributed: "
                          "pip install 'bpfast[distributed]'") from None
    n_members = len(pop)
    if shards is None:
        shards = 4 * max(1, len(client.scheduler_info().get("workers", {})))
    shards = min(check_int("shards", shards, low=1), n_members)
    parts = [part for part in np.array_split(np.arange(n_members), shards) if part.size]
    # Shared data once to every worker; a member's own data go with its shard. hash=False: a key
    # of its own, which the release of an earlier scatter of the same values (same hash, same
    # key) cannot delete while this fit still needs it (seen as "lost dependencies").
    X = client.scatter(plan.X, broadcast=True, hash=False) if plan.shared_x else None
    T = client.scatter(plan.T, broadcast=True, hash=False) if plan.shared_t else None
    futures = {}
    for index, members in enumerate(parts):
        sub_plan = plan.subset(members)
        future = client.submit(
            _train_shard, pop._subset(members),
            dataclasses.replace(sub_plan, X=None, T=None),
            X if plan.shared_x else sub_plan.X, T if plan.shared_t else sub_plan.T,
            n_threads, False, pure=False)
        futures[future] = index
    results: list = [None] * len(parts)
    try:
        for done, future in enumerate(as_completed(list(futures)), start=1):
            index = futures[future]
            sub, result = future.result()
            pop._put(parts[index], sub)
            results[index] = result
            if progress:
                print(f"\r{done}/{len(parts)} shards back", end="", file=sys.stderr, flush=True)
    except BaseException:
        client.cancel(list(futures))
        raise
    if progress:
        print(file=sys.stderr)
    order = np.concatenate(parts)
    width = max((r.errors.shape[1] for r in results if r.errors is not None), default=0)

    def joined(field):
        return np.concatenate([getattr(r, field) for r in results])[np.argsort(order)]

    errors = None
    if plan.record_errors:
        padded = [np.pad(r.errors, ((0, 0), (0, width - r.errors.shape[1])),
                         constant_values=np.nan) for r in results]
        errors = np.concatenate(padded)[np.argsort(order)]
    return PopulationResult(n_sweeps=joined("n_sweeps"), stop_reason=joined("stop_reason"),
                            final_error=joined("final_error"), solved=joined("solved"),
                            errors=errors, engine=results[0].engine)
