"""Training a population on a Dask cluster: ``Population.fit(..., client=client)``.

The members are split into shards; each shard is a sub-population trained by one task on a
worker, exactly as the local fit would train those members (every member is independent of the
others, and of which process or how many threads train it), so the gathered result is bit for bit
the local one: provided every worker runs the same bpfast build with the same kernel variant as
this process, which is checked before anything is sent (and by each task: a worker that joins
later) and refused otherwise, saying what differs. Shared data go to the workers once
(scattered); a member's own data travel with its shard.

A worker that dies takes its running tasks with it; Dask's scheduler runs them again on another
worker (up to its ``distributed.scheduler.allowed-failures`` times) from the shard's start, which
the task received as its input. If the dead worker held the last copy of the shared data (Dask's
memory manager keeps as few copies as the waiting tasks need), the scheduler cannot remake them
and forgets the tasks that need them; this side, which still has everything, then scatters the
data again and resubmits those shards. Either way nothing is lost and each member's result is
taken once. Needs ``dask[distributed]`` (``pip install 'bpfast[distributed]'``); nothing else in
bpfast imports it.

    from dask.distributed import Client
    client = Client("tcp://scheduler-host:8786")      # a running cluster's scheduler
    pop = bpfast.Population([6, 2, 1], seeds=range(100_000))
    result = pop.fit(X, T, n_sweeps=2000, stop_tol=0.2, client=client)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import sys
import threading
import uuid

import numpy as np

from ._validation import check_int


@functools.lru_cache(maxsize=None)
def _module_digest() -> str:
    from . import _core
    with open(_core.__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def build_fingerprint() -> tuple:
    """What decides a trained member's bits besides its data and settings: bpfast's version, the
    kernel variant in use (BPFAST_ISA, or the best the CPU runs) and the compiled module itself
    (two builds of one version may round differently)."""
    from . import __version__, build_info
    return (__version__, build_info()["simd"], _module_digest())


def _mismatch(where: str, theirs, ours) -> str:
    return (f"{where} runs bpfast {theirs[0]} with {theirs[1]} kernels (build {theirs[2]}), this "
            f"process {ours[0]} with {ours[1]} kernels (build {ours[2]}): its members would not "
            f"be the local run's bit for bit. Install the same bpfast wheel everywhere, and set "
            f"BPFAST_ISA to one variant every machine runs (baseline runs on any x86-64)")


def _watch_for_cancel(event, cancelled: threading.Event, done: threading.Event):
    """On a worker, beside a shard's training: set `cancelled` once the client sets the Dask
    Event `event` (its fit was interrupted), so that the training stops within a chunk."""
    try:
        while not done.is_set():
            if event.wait(timeout=CANCEL_POLL_SECONDS):
                cancelled.set()
                return
    except Exception:  # no scheduler to ask (the cluster is going away): train on, as before
        return


def _train_shard(sub, plan, X, T, n_threads, progress, expected, cancel_event=None):
    """On a worker: train a shard (a sub-population) by its plan; return it and its result. With
    `cancel_event` (a Dask Event's name), stop early, with CancelledError, once it is set."""
    from . import _threads
    ours = build_fingerprint()
    if ours != expected:  # a worker that joined after the check in fit_sharded
        raise RuntimeError(_mismatch("this worker", ours, expected))
    cancelled = done = None
    if cancel_event is not None:
        from distributed import Event, get_client
        try:  # the client named here, in the task's thread: the watcher's could not find it
            event = Event(cancel_event, client=get_client())
        except ValueError:  # not on a worker, no client: nothing can cancel it
            event = None
        if event is not None:
            cancelled, done = threading.Event(), threading.Event()
            threading.Thread(target=_watch_for_cancel, args=(event, cancelled, done),
                             daemon=True).start()
    if n_threads is None:  # the worker's own threads, not every core of its machine
        try:
            from distributed import get_worker
            n_threads = get_worker().state.nthreads
        except (ImportError, ValueError, AttributeError):
            n_threads = None
    threads = _threads.usable_threads(_threads.requested_threads(n_threads), False)
    try:
        result = sub._execute(dataclasses.replace(plan, X=X, T=T), threads, progress, cancelled)
    finally:
        if done is not None:
            done.set()
    return sub, result


# How often a running shard asks the scheduler whether its fit was interrupted (a Dask Event):
# a Ctrl-C on the client frees the workers within about this long plus a chunk of training.
CANCEL_POLL_SECONDS = 0.5

# How many times one shard may be resubmitted after the cluster forgot it; a shard forgotten more
# often than that means the cluster is going away (or someone cancels its tasks), not bad luck.
RESUBMITS = 3


class _SharedData:
    """The data all shards share, scattered to every worker once, and again when lost."""

    def __init__(self, client, plan):
        self.client, self.plan = client, plan
        self.generation = 0
        self._scatter()

    def _scatter(self):
        # hash=False: a key of its own, which the release of an earlier scatter of the same values
        # (same hash, same key) cannot delete while this fit still needs it ("lost dependencies").
        def scatter(data):
            return self.client.scatter(data, broadcast=True, hash=False)
        self.X = scatter(self.plan.X) if self.plan.shared_x else None
        self.T = scatter(self.plan.T) if self.plan.shared_t else None

    def renew(self, generation):
        """Scatter again, unless a shard of the same loss has had it done already."""
        if generation == self.generation:
            self.generation += 1
            self._scatter()


def fit_sharded(pop, client, plan, n_threads, shards, progress):
    """Population.fit on `client`'s cluster (see Population.fit)."""
    from .population import PopulationResult
    try:
        from distributed import Event, as_completed
    except ImportError:  # a client was passed, so dask is there; distributed is its scheduler
        raise ImportError("training on a cluster needs dask.distributed: "
                          "pip install 'bpfast[distributed]'") from None
    n_members = len(pop)
    if shards is None:
        shards = 4 * max(1, len(client.scheduler_info().get("workers", {})))
    shards = min(check_int("shards", shards, low=1), n_members)
    parts = [part for part in np.array_split(np.arange(n_members), shards) if part.size]
    ours = build_fingerprint()
    for worker, theirs in client.run(build_fingerprint).items():
        if tuple(theirs) != ours:
            raise RuntimeError(_mismatch(f"worker {worker}", tuple(theirs), ours))
    shared = _SharedData(client, plan)
    # set on Ctrl-C (or any error here): the shards running on workers stop within a chunk
    cancel = Event(f"bpfast-fit-{uuid.uuid4().hex}", client=client)
    pending = {}  # future -> (shard index, generation of the shared data it was given)

    def submit(index):
        sub_plan = plan.subset(parts[index])
        future = client.submit(
            _train_shard, pop._subset(parts[index]),
            dataclasses.replace(sub_plan, X=None, T=None),
            shared.X if plan.shared_x else sub_plan.X, shared.T if plan.shared_t else sub_plan.T,
            n_threads, False, ours, cancel.name, pure=False)
        pending[future] = index, shared.generation
        return future

    results: list = [None] * len(parts)
    resubmits = [0] * len(parts)
    try:
        waiting = as_completed([submit(index) for index in range(len(parts))])
        for future in waiting:
            index, generation = pending.pop(future)
            try:
                if future.cancelled():
                    raise concurrent.futures.CancelledError
                sub, result = future.result()
            except concurrent.futures.CancelledError:
                # The scheduler forgot the task: a worker's death took the last copy of its
                # input, or of its finished result before result() could fetch it (result()
                # then raises). Everything is still here; send it again.
                if resubmits[index] == RESUBMITS:
                    raise RuntimeError(
                        f"shard {index} of {len(parts)} was forgotten by the cluster after "
                        f"{RESUBMITS} resubmissions (its workers keep dying, or something "
                        "cancels its tasks); the members of the shards not gathered keep their "
                        "starting state") from None
                resubmits[index] += 1
                shared.renew(generation)
                waiting.add(submit(index))
                continue
            pop._put(parts[index], sub)
            results[index] = result
            if progress:
                done = sum(r is not None for r in results)
                print(f"\r{done}/{len(parts)} shards back", end="", file=sys.stderr, flush=True)
    except BaseException:
        try:
            cancel.set()
        except Exception:  # a cluster going away: its tasks go with it
            pass
        client.cancel(list(pending))
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
