"""Populations: many networks of one architecture, trained in one call.

A seed sweep, a hyper-parameter grid, an ensemble or a replication study is a population of
networks that differ only in their seeds and settings. :class:`Population` keeps them in one
arena and trains them all in compiled code, each exactly as :meth:`Network.fit` would train it
alone (bit for bit), whatever the population's size, the member's place in it, the other members
or the threads.

How it runs (the library chooses, not the user):

* **members in lanes**: full-batch training with the momentum rule of nets up to 1,024
  parameters (640 in float32, 512 in float64 with AVX-512) and 32 units a layer, within 2 MiB of
  buffers per group of members, without ties or softmax outputs (the paper's symmetry, XOR,
  encoder, parity and family-trees nets): a vector register holds one value of as many members
  as it has lanes, so a tiny net's few units still fill the vector unit, and there is no
  per-sweep overhead at all (csrc/population.inc.c). Each thread fills its lanes with members,
  and a lane whose member stops takes the next.
* **whole members per thread**: everything else (larger nets, mini-batches, Adam, dropout,
  clipping, softmax outputs): each thread trains whole members, one after another, with the same
  compiled training loop as Network.fit on one thread.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import sys
import threading
import time
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core, _threads
from ._validation import (
    INT64_MAX,
    NonFiniteError,
    check_bool,
    check_finite_state,
    check_fits,
    check_int,
    check_real,
)
from .network import (
    DTYPES,
    FLOAT_MAX,
    INITS,
    OPTIMIZERS,
    FitResult,
    Network,
    init_bounds,
    starting_state,
    state_length,
    update_rule,
)
from .schedule import Phase
from .topology import Layer, Tie, Topology

# Each member's status, as the core's enum bp_status numbers it.
STATUS_NAMES = tuple(_core.STATUS_NAMES[code] for code in range(len(_core.STATUS_NAMES)))
RUNNING, SOLVED = STATUS_NAMES.index("max_sweeps"), STATUS_NAMES.index("solved")

# Sweeps per compiled call in the lanes: about this long each, as measured by the call before
# (progress and Ctrl-C are handled between calls); the size never changes the result.
CHUNK_SECONDS = 0.05
# ... and at most this many times the sweeps of the call before: a guard against a rate measured
# on a call too short to time (a first call of one sweep measures its set-up too, so its rate is
# high, and the next call short). 16 held W5's first 273 of 1,425 sweeps on one thread: its third
# call, 256 sweeps, took 38 ms there, under THREADED_CALL_SECONDS (session 20).
CHUNK_GROWTH = 256
# A call of the lanes runs on threads only when its work on one thread takes at least this long:
# its threads meet once, at its end, and on a machine whose cores are all busy the one that
# finished first can wait a scheduler time slice (several ms) there. Shorter calls run on one
# thread (a population of 200 6-2-1 nets, 300 sweeps, with every core busy: 2.2x slower on two
# threads before this rule). The result is the same either way.
THREADED_CALL_SECONDS = 0.04


@dataclass(frozen=True)
class PopulationResult:
    """What a call to :meth:`Population.fit` did, member by member.

    Attributes
    ----------
    n_sweeps : ndarray of shape (n_members,), int64
        Sweeps whose weight changes were applied, as :attr:`FitResult.n_sweeps`.
    stop_reason : ndarray of shape (n_members,), str
        "solved", "max_sweeps", or, for a member that diverged, "non_finite" (its error became
        NaN or infinite) or "non_finite_weights" (an update made a weight so). A diverged member
        is left, as Network.fit leaves a network (which raises FloatingPointError instead), with
        the weights it had at the start of the last sweep whose error and weights were finite; the
        other members are not affected.
    final_error : ndarray of shape (n_members,), float64
        E of each member's final weights over all its cases (per case with reduction="mean").
    solved : ndarray of shape (n_members,), bool
        Whether every output of the member's final weights is within its `stop_tol`.
    errors : ndarray of shape (n_members, max(n_sweeps)), float64, or None
        With ``record_errors=True``: the error of every sweep (as FitResult.errors), NaN past a
        member's own n_sweeps.
    engine : {"lanes", "members"}
        How the population ran (see the module docstring).
    """

    n_sweeps: np.ndarray
    stop_reason: np.ndarray
    final_error: np.ndarray
    solved: np.ndarray
    errors: np.ndarray | None
    engine: str

    def __len__(self) -> int:
        return len(self.n_sweeps)

    def __getitem__(self, i: int) -> FitResult:
        """Member i's result as a FitResult (its errors only if they were recorded)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"a PopulationResult is indexed by one member's int, got {i!r}; its "
                            f"arrays (n_sweeps, final_error, ...) hold every member's values")
        if not -len(self) <= i < len(self):
            raise IndexError(f"member {i} of a population of {len(self)}")
        n = int(self.n_sweeps[i])
        errors = self.errors[i, :n].copy() if self.errors is not None else np.full(0, np.nan)
        return FitResult(errors=errors, n_sweeps=n, stop_reason=str(self.stop_reason[i]),
                         final_error=float(self.final_error[i]), solved=bool(self.solved[i]))

    def __repr__(self) -> str:
        reasons, counts = np.unique(self.stop_reason, return_counts=True)
        summary = ", ".join(f"{reason}={count}" for reason, count in zip(reasons, counts))
        return (f"PopulationResult({len(self)} members, engine={self.engine!r}, {summary}, "
                f"median n_sweeps={np.median(self.n_sweeps):g})")


@dataclass(frozen=True)
class _Plan:
    """A fit's arguments checked and converted: what each engine trains by. Per-member values
    (one row or entry per member) and shared ones alike; `subset` takes some members' share."""

    X: np.ndarray               # one member's (n, n_inputs), or every member's if not shared_x
    T: np.ndarray               # likewise, targets (n, n_outputs)
    shared_x: bool
    shared_t: bool
    weights: np.ndarray | None  # case weights, (1 if shared else n_members, n)
    n: int
    phases: list                # per member: the phase tuples of _core.train
    totals: np.ndarray          # per member: sweeps in all
    tols: np.ndarray            # per member: stop_tol, 0 for none
    per_case: np.ndarray        # per member: what errors are divided by (reduction="mean")
    batch_size: int
    shuffle: bool
    loss: str
    dead_zone: tuple
    reduction: str
    dropout: float
    record_errors: bool
    optimizer: str
    lanes_allowed: bool         # the run allows members in lanes (_execute asks the kernels)

    def subset(self, members: np.ndarray) -> _Plan:
        """The plan of these members alone (their rows, in this order)."""
        return dataclasses.replace(
            self, X=self.X if self.shared_x else self.X[members],
            T=self.T if self.shared_t else self.T[members],
            weights=None if self.weights is None or self.weights.shape[0] == 1
            else self.weights[members],
            phases=[self.phases[i] for i in members], totals=self.totals[members],
            tols=self.tols[members], per_case=self.per_case[members])


def _member_rows(name: str, check, array: np.ndarray, dtype):
    """check() of a 3-D array of one matrix per member, as the members' rows stacked. A NaN or
    infinity is reported by member and case: the stacked row check() names is no row of the
    caller's."""
    n_members, n = array.shape[:2]
    try:
        return check(array.reshape(n_members * n, *array.shape[2:]))
    except NonFiniteError as exc:
        member, case = divmod(exc.row, n)
        raise ValueError(f"{name} contains a value that is NaN or infinite in "
                         f"{np.dtype(dtype).name} (member {member}, case {case}, column "
                         f"{exc.column}: {array[member, case, exc.column]!r}); remove or replace "
                         f"such values") from None


def _member_weights(shell, member: int, row, n: int) -> np.ndarray:
    """One member's row of a 2-D sample_weight, checked; an error names the member."""
    try:
        return shell._sample_weight(row, n)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"sample_weight of member {member}: {exc}") from None


def _stop_if_cancelled(cancelled: threading.Event | None) -> None:
    """CancelledError once `cancelled` is set (see Population._execute)."""
    if cancelled is not None and cancelled.is_set():
        raise concurrent.futures.CancelledError("the fit was cancelled")


def _as_array(data) -> np.ndarray | None:
    """`data` as an array to read its shape from, or None where it is not one (a dict of input
    groups, a ragged list): Network's checks then say what is wrong with it."""
    if isinstance(data, Mapping):
        return None
    try:
        return np.asarray(data)
    except (ValueError, TypeError):
        return None


def _is_per_member(value) -> bool:
    """Whether a setting is given one per member (a list, tuple, range or array of values)."""
    return isinstance(value, (list, tuple, range)) or \
        isinstance(value, np.ndarray) and value.ndim > 0


def _per_member(name: str, value, n: int) -> list:
    """A setting given for all members (anything but a list, tuple, range or array) or one per
    member (a list, tuple, range or 1-D array of n values), as a list of n values; the values
    are checked where they are used."""
    if not _is_per_member(value):
        return [value.item() if isinstance(value, np.ndarray) else value] * n
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise ValueError(f"{name} must be one value or a 1-D sequence of one per member, got an "
                         f"array of shape {value.shape}")
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name} must be one value for every member or a sequence of one per "
                         f"member ({n}), got {len(values)} values")
    return values


class Population:
    """N networks of one architecture, trained together; member i starts exactly as
    ``Network(..., seed=seeds[i], init_range=init_range[i])`` would.

    Parameters
    ----------
    sizes, inputs, layers, ties, activation, output_activation, bias, init, dtype :
        The architecture and its settings, as for :class:`Network` (nets with ties train in
        the whole-members engine).
    seeds : sequence of int
        One seed per member (e.g. ``range(1000)``): its starting weights and shuffling.
    init_range : float or sequence of float, default 0.3
        For ``init="uniform"``: one for all members or one per member.

    Members are read and written as ordinary networks: ``pop[i]`` is a copy of member i as a
    :class:`Network` (predict, save, Hinton diagrams, ...), ``pop[i] = net`` puts a network of the
    same architecture and dtype in its place. ``pop.params`` is the (n_members, n_params) arena.
    """

    def __init__(self, sizes: Sequence[int] | None = None, *, seeds,
                 inputs: Mapping[str, int] | None = None, layers: Sequence[Layer] | None = None,
                 ties: Sequence[Tie] = (), activation: str = "logistic",
                 output_activation: str | None = None, bias: bool = True, init_range=0.3,
                 init: str = "uniform", dtype="float32"):
        if seeds is None:
            raise TypeError("seeds must be a sequence of seeds, one per member (e.g. "
                            "seeds=range(100)); a population has no default")
        if isinstance(seeds, (int, np.integer)):
            raise TypeError(f"seeds must be a sequence of seeds, one per member (e.g. "
                            f"seeds=range({seeds})), got {seeds!r}")
        if isinstance(seeds, (str, bytes)):
            raise TypeError(f"seeds must be a sequence of integers, got {seeds!r}")
        if not isinstance(seeds, Sized):
            seeds = list(seeds)  # an iterator: its length is known once it has been read
        n = len(seeds)
        if n == 0:
            raise ValueError("a population needs at least one member (seeds is empty)")
        try:
            first_seed = check_int("seeds[i]", next(iter(seeds)), low=0)
        except TypeError as exc:
            raise TypeError(f"seeds must be a sequence of non-negative integers: {exc}") from None
        # one per member: a sequence the caller holds already (a value for all: after the check)
        ranges = _per_member("init_range", init_range, n) if _is_per_member(init_range) else None
        first_range = _per_member("init_range", init_range, 1)[0] if ranges is None else ranges[0]
        # The first member is a Network built the ordinary way: it checks every argument.
        first = Network(sizes, inputs=inputs, layers=layers, ties=ties, activation=activation,
                        output_activation=output_activation, bias=bias, init_range=first_range,
                        init=init, seed=first_seed, dtype=dtype)
        self.topology: Topology = first.topology
        self.dtype = first.dtype
        self.init = init
        n_params = self.topology.n_params
        # before any list of n values is made (10**10 seeds took minutes and gigabytes to get
        # here): the members' arrays, and each member's seed and settings as Python objects
        check_fits(n * (n_params * (2 * self.dtype.itemsize + 8) + _START_RNG_BYTES +
                        _MEMBER_OBJECT_BYTES),
                   f"a population of {n:,} networks of {n_params:,} parameters")
        try:
            seed_list = [check_int("seeds[i]", s, low=0) for s in seeds]
        except TypeError as exc:
            raise TypeError(f"seeds must be a sequence of non-negative integers: {exc}") from None
        if ranges is None:
            ranges = _per_member("init_range", init_range, n)
        high = FLOAT_MAX[self.dtype.name]
        self._init_ranges = np.array([check_real("init_range", r, low=0, high=high)
                                      for r in ranges], dtype=np.float64)
        self._seeds = np.array(seed_list, dtype=object)  # Python ints: seeds may pass 2**63
        self._params = np.empty((n, n_params), dtype=self.dtype)
        self._shuffle = np.empty(n, dtype=np.uint64)
        self._start_rng = np.empty((n, _START_RNG_WORDS), dtype=np.uint64)
        bounds = None if init == "uniform" else init_bounds(self.topology, init)
        for i in range(n):
            rng, self._params[i], self._shuffle[i] = starting_state(
                self.topology, seed_list[i], init, float(self._init_ranges[i]), self.dtype,
                bounds)
            self._start_rng[i] = _pack_pcg64(rng.bit_generator.state)
        self._velocity = np.zeros_like(self._params)
        self.optimizer = "momentum"
        self._guard = _core.TrainingGuard()

    # -- members ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._params.shape[0]

    @property
    def n_members(self) -> int:
        return len(self)

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self._seeds]

    @property
    def init_range(self) -> np.ndarray:
        return self._init_ranges.copy()

    @property
    def params(self) -> np.ndarray:
        """The (n_members, n_params) arena (a writable view): row i is member i's params."""
        return self._params.view()

    @property
    def velocity(self) -> np.ndarray:
        """The optimiser's state of every member, one row each (see Network.velocity)."""
        return self._velocity.view()

    def _index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"members are indexed by int, got {i!r}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"member {i} of a population of {n}")
        return int(i) % n

    def __getitem__(self, i) -> Network:
        """A copy of member i as an ordinary Network (changing it leaves the population alone;
        ``pop[i] = net`` puts one back)."""
        i = self._index(i)
        with self._guard.reading("take a member of the population"):
            seed, init_range = int(self._seeds[i]), float(self._init_ranges[i])
            net = Network.__new__(Network)
            net._assign(self.topology, self.dtype, init_range, self.init, seed,
                        self._start_rng_state(i), self._params[i].copy(),
                        self._velocity[i].copy(), int(self._shuffle[i]), self.optimizer)
        return net

    def __setitem__(self, i, net: Network) -> None:
        """Put (a copy of) `net` in member i's place: a plain Network of the same architecture,
        dtype, optimizer and kind of starting weights (`init`), so that the population still
        says how each member started."""
        i = self._index(i)
        if type(net) is not Network:
            raise TypeError(f"a population's members are plain bpfast.Network, got "
                            f"{type(net).__name__}")
        if net.topology.describe() != self.topology.describe() or net.dtype != self.dtype:
            raise ValueError("the network's architecture or dtype differs from the population's")
        if net.optimizer != self.optimizer:
            raise ValueError(f"the network's optimizer state is {net.optimizer!r}, the "
                             f"population's {self.optimizer!r}")
        if net.init != self.init:
            raise ValueError(f"the network started from init={net.init!r} weights, the "
                             f"population's members from init={self.init!r}")
        if not (np.isfinite(net.params).all() and np.isfinite(net.velocity).all()):
            raise ValueError("the network's params or velocity contain NaN or infinite values")
        with self._guard:  # not while a fit trains the members (another thread's)
            self._params[i] = net.params
            self._velocity[i] = net.velocity
            self._shuffle[i] = net._shuffle_state
            self._seeds[i] = net.seed
            self._init_ranges[i] = net.init_range
            if self._start_rng is not None:  # member i now starts from net's seed: drawn later
                self._start_rng[i] = 0

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def _start_rng_state(self, i: int) -> dict:
        """Member i's generator as Network(seed=seeds[i]) leaves it after drawing its start: kept
        from __init__ (redrawing a member's start costs more than the rest of pop[i]), else drawn
        again (a loaded or unpickled population, or a member put in by __setitem__)."""
        if self._start_rng is not None and self._start_rng[i].any():
            return _unpack_pcg64(self._start_rng[i])
        rng, _, _ = starting_state(self.topology, int(self._seeds[i]), self.init,
                                   float(self._init_ranges[i]), self.dtype)
        return rng.bit_generator.state

    def _subset(self, members: np.ndarray) -> Population:
        """A population of copies of these members (in this order)."""
        sub = Population.__new__(Population)
        sub.topology, sub.dtype, sub.init, sub.optimizer = (self.topology, self.dtype, self.init,
                                                            self.optimizer)
        sub._seeds, sub._init_ranges = self._seeds[members], self._init_ranges[members]
        sub._params, sub._velocity = self._params[members], self._velocity[members]
        sub._shuffle = self._shuffle[members]
        sub._start_rng = None if self._start_rng is None else self._start_rng[members]
        sub._guard = _core.TrainingGuard()
        return sub

    def _put(self, members: np.ndarray, sub: Population) -> None:
        """Write a trained _subset back into these members' places."""
        self._params[members], self._shuffle[members] = sub._params, sub._shuffle
        if sub.optimizer != self.optimizer:  # the first shard back after a switch of rule
            self._velocity = np.zeros((len(self), sub._velocity.shape[1]), self.dtype)
            self.optimizer = sub.optimizer
        self._velocity[members] = sub._velocity

    def _shell(self) -> Network:
        """A Network with this architecture and dtype, for its checks of data and settings."""
        shell = Network.__new__(Network)
        shell.topology, shell.dtype = self.topology, self.dtype
        return shell

    # -- data -----------------------------------------------------------------------------------

    def _data(self, X, T, sample_weight):
        """X and T checked and converted, whether each is shared by all members, the case
        weights (None, or float64 of shape (1 if shared else n_members, n)), and n."""
        shell, n_members = self._shell(), len(self)
        x_array = _as_array(X)
        shared_x = x_array is None or x_array.ndim != 3
        if shared_x:
            Xc = shell._inputs(X)
            n = Xc.shape[0]
        else:
            assert x_array is not None
            if x_array.shape[0] != n_members:
                raise ValueError(f"X of shape {x_array.shape}: a 3-D X holds one (n_cases, "
                                 f"n_inputs) matrix per member, {n_members} of them")
            n = x_array.shape[1]
            Xc = _member_rows("X", shell._inputs, x_array, self.dtype).reshape(n_members, n, -1)
        t_array = _as_array(T)
        shared_t = t_array is None or t_array.ndim != 3
        if shared_t:
            Tc = shell._targets(T, n)
        else:
            assert t_array is not None
            if t_array.shape[:2] != (n_members, n):
                raise ValueError(f"T of shape {t_array.shape}: a 3-D T holds one (n_cases, "
                                 f"n_outputs) matrix per member, here ({n_members}, {n}, ...)")
            Tc = _member_rows("T", lambda rows: shell._targets(rows, n_members * n), t_array,
                              self.dtype).reshape(n_members, n, -1)
        weights = None
        if sample_weight is not None:
            w = np.asarray(sample_weight)
            if w.ndim == 2:
                if w.shape[0] != n_members:
                    raise ValueError(f"sample_weight of shape {w.shape}: a 2-D sample_weight "
                                     f"holds one row of case weights per member ({n_members})")
                weights = np.stack([_member_weights(shell, i, row, n)
                                    for i, row in enumerate(w)])
            else:
                weights = shell._sample_weight(w, n)[None, :]
        return Xc, Tc, shared_x, shared_t, weights, n

    # -- training -----------------------------------------------------------------------------

    def fit(self, X, T, *, lr=None, momentum=None, n_sweeps=None, weight_decay=None,
            schedule=None, decay_biases: bool = False, batch_size: int | None = None,
            shuffle: bool = True, loss: str = "sse", dead_zone=(0.2, 0.8), reduction: str = "sum",
            sample_weight=None, optimizer: str = "momentum", beta2: float = 0.999,
            epsilon: float = 1e-8, clip_norm: float | None = None, dropout: float = 0.0,
            stop_tol=None, record_errors: bool = False, n_threads: int | None = None,
            progress: bool = False, client=None, shards: int | None = None) -> PopulationResult:
        """Train every member; each ends exactly where ``self[i].fit(...)`` with its own settings
        would have taken it (bit for bit), except that a member that diverges is reported in the
        result instead of raising.

        Parameters are those of :meth:`Network.fit` but `callback`, `callback_every` and
        `evaluate` (every member's final error and stop test are measured), with these
        differences:

        lr, momentum, n_sweeps, weight_decay, stop_tol :
            One value for all members, or a sequence of one per member.
        schedule :
            A list of Phase for all members, or a list of one such list per member.
        X, T :
            Shared by all members, as for Network.fit; or one set per member, X of shape
            (n_members, n_cases, n_inputs) and T (n_members, n_cases, n_outputs).
        sample_weight :
            Shape (n_cases,) for all, or (n_members, n_cases): each member's own case weights,
            0 holding a case out of its training and its stop test.
        record_errors : bool, default False
            Keep the error of every sweep of every member (n_members x n_sweeps float64).
        client : dask.distributed.Client, optional
            Train on a Dask cluster instead (``pip install 'bpfast[distributed]'``): the members
            are split into `shards` (default: four per worker) sub-populations, each trained by
            one task on a worker, and gathered back; the result is bit for bit the local one
            (every worker must run this process's bpfast build and kernel variant: a
            RuntimeError says what differs, before anything is sent). A
            task whose worker dies is run again elsewhere from its shard's start (by Dask; or, if
            the shared data died with the worker, resubmitted from here with the data scattered
            again), so nothing is lost or counted twice. With n_threads None each task uses
            its worker's threads. On Ctrl-C the shards not yet gathered are cancelled and keep
            their starting state; the gathered ones keep their training. The shards running
            on workers see it through a Dask Event they poll every half second, and stop at
            their next chunk of sweeps (the lanes) or member (whole members), freeing the
            workers.
            A shard the cluster forgets again after 3 resubmissions raises RuntimeError, with
            the same outcome for the members.
        shards : int, optional
            How many sub-populations to split the members into with `client`.
        n_threads : int, optional
            Threads (the default: as for Network.fit); they take whole members, so the result
            does not depend on it.
        progress : bool, default False
            Print the sweeps done and the members still training to stderr as it goes.

        Returns
        -------
        PopulationResult

        Raises
        ------
        KeyboardInterrupt
            On Ctrl-C, every member is left at the end of a sweep.
        MemoryError
            Before allocating, if the run's buffers exceed the memory available now.
        RuntimeError
            If this population is being trained already.
        """
        plan = self._plan(X, T, lr, momentum, n_sweeps, weight_decay, schedule, decay_biases,
                          batch_size, shuffle, loss, dead_zone, reduction, sample_weight,
                          optimizer, beta2, epsilon, clip_norm, dropout, stop_tol, record_errors)
        progress = check_bool("progress", progress)
        if client is None and shards is not None:
            raise ValueError("shards splits the members over a cluster: give a client too")
        if client is not None:
            if not all(callable(getattr(client, name, None))
                       for name in ("submit", "scatter", "run", "scheduler_info")):
                raise TypeError(f"client must be a dask.distributed.Client (for a scheduler's "
                                f"address: Client('tcp://host:8786')), got {client!r}")
            if getattr(client, "status", "running") in ("closing", "closed"):
                raise ValueError(f"the Dask client is {client.status}: connect a new one")
            if n_threads is not None:  # here, not in every worker's log after the data are sent
                check_int("n_threads", n_threads, low=1, high=_threads.MAX_THREADS)
            from .distributed import fit_sharded
            with self._guard:  # one fit at a time, on a cluster too: each puts back its members
                return fit_sharded(self, client, plan, n_threads, shards, progress)
        threads = _threads.usable_threads(_threads.requested_threads(n_threads),
                                          n_threads is not None)
        return self._execute(plan, threads, progress)

    def _plan(self, X, T, lr, momentum, n_sweeps, weight_decay, schedule, decay_biases,
              batch_size, shuffle, loss, dead_zone, reduction, sample_weight, optimizer, beta2,
              epsilon, clip_norm, dropout, stop_tol, record_errors) -> _Plan:
        """fit's arguments checked and converted (every bad one raises here, before training)."""
        shell, n_members = self._shell(), len(self)
        decay_biases = check_bool("decay_biases", decay_biases)
        shuffle = check_bool("shuffle", shuffle)
        record_errors = check_bool("record_errors", record_errors)
        rule = update_rule(optimizer, beta2, epsilon, clip_norm)
        dropout = check_real("dropout", dropout, low=0, high=1, high_open=True)
        shell._check_loss(loss, reduction)
        dead_zone = shell._dead_zone(dead_zone)
        phases = self._member_phases(shell, lr, momentum, n_sweeps, weight_decay, schedule,
                                     decay_biases, rule)
        tols = np.array([0.0 if t is None else check_real("stop_tol", t, low=0, low_open=True)
                         for t in _per_member("stop_tol", stop_tol, n_members)])
        Xc, Tc, shared_x, shared_t, weights, n = self._data(X, T, sample_weight)
        shell._check_targets_for(loss, Tc.reshape(-1, self.topology.n_outputs))
        batch_size = n if batch_size is None else min(
            check_int("batch_size", batch_size, low=1, high=INT64_MAX), n)
        if not (np.isfinite(self._params).all() and np.isfinite(self._velocity).all()):
            bad = np.flatnonzero(~(np.isfinite(self._params).all(axis=1) &
                                   np.isfinite(self._velocity).all(axis=1)))
            raise ValueError(f"members {bad[:10].tolist()} have NaN or infinite params or "
                             f"velocity (written through pop.params?); set finite values")
        lanes_allowed = (batch_size == n and optimizer == "momentum" and clip_norm is None and
                         dropout == 0)
        totals = np.array([sum(p[0] for p in member) for member in phases], dtype=np.int64)
        if record_errors:  # the sweeps sure to run: members with a stop rule grow the log
            certain = int(totals[tols == 0].max()) if (tols == 0).any() else 0
            check_fits(n_members * max(certain, 1) * 8,
                       f"the errors of {n_members:,} members' sweeps")
        per_case = np.ones(n_members)  # what the errors are divided by
        if reduction == "mean":
            per_case[:] = n if weights is None else weights.sum(axis=1)
        return _Plan(X=Xc, T=Tc, shared_x=shared_x, shared_t=shared_t, weights=weights, n=n,
                     phases=phases, totals=totals, tols=tols, per_case=per_case,
                     batch_size=batch_size, shuffle=shuffle, loss=loss, dead_zone=dead_zone,
                     reduction=reduction, dropout=dropout, record_errors=record_errors,
                     optimizer=optimizer, lanes_allowed=lanes_allowed)

    def _execute(self, plan: _Plan, threads: int, progress: bool,
                 cancelled: threading.Event | None = None) -> PopulationResult:
        """Train every member by `plan` on `threads` threads. Once `cancelled` is set (a shard
        on a worker, whose fit was interrupted on the client), CancelledError at the next call
        of the lanes (CHUNK_SECONDS) or the next member's start."""
        # A new rule starts from a zero state, the population's once training has begun: a fit
        # refused before it (being trained already, not enough memory) keeps the old one.
        switching = plan.optimizer != self.optimizer
        state = np.zeros((len(self), state_length(plan.optimizer, self.topology.n_params)),
                         self.dtype) if switching else self._velocity
        # the engine, by this process's kernels (a worker of a cluster may have others): either
        # trains every member to the same bits
        lanes = plan.lanes_allowed and _core.population_lanes(self.topology, self.dtype, plan.n,
                                                              plan.weights is not None)
        run = self._fit_lanes if lanes else self._fit_members

        def begin():  # the engine's checks passed: the new rule's state is the population's
            if switching:
                self._velocity, self.optimizer = state, plan.optimizer

        with self._guard:
            n_done, status, final_error, within, errors = run(state, plan, threads, progress,
                                                              cancelled, begin)
        if errors is not None:
            errors /= plan.per_case[:, None]
            errors = errors[:, :max(int(n_done.max()), 0)]
        return PopulationResult(
            n_sweeps=n_done, stop_reason=np.array([STATUS_NAMES[s] for s in status]),
            final_error=final_error / plan.per_case,
            solved=(plan.tols > 0) & ((status == SOLVED) | within.astype(bool)),
            errors=errors, engine="lanes" if lanes else "members")

    def _member_phases(self, shell, lr, momentum, n_sweeps, weight_decay, schedule,
                       decay_biases, rule):
        n_members = len(self)
        if schedule is not None and not isinstance(schedule, (Sequence, np.ndarray)):
            try:  # an iterable of Phases, as Network.fit takes (a generator: read it once)
                schedule = list(schedule)
            except TypeError:
                raise TypeError(f"schedule must be a list of bpfast.Phase, or one such list per "
                                f"member, got {schedule!r}") from None
        if schedule is not None and len(schedule) and not isinstance(schedule[0], Phase) \
                and not isinstance(schedule, (str, bytes)):
            schedules = _per_member("schedule", schedule, n_members)  # one list per member
        else:
            schedules = [schedule] * n_members
        settings = [_per_member(name, value, n_members) for name, value in
                    (("lr", lr), ("momentum", momentum), ("n_sweeps", n_sweeps),
                     ("weight_decay", weight_decay))]
        # members given the same setting objects (a value for all: 1,000 seeds of one recipe)
        # share one checked list; by identity, as the values may be anything until checked
        checked: dict = {}
        varies = any(len({id(v) for v in values}) > 1 for values in [*settings, schedules])
        phases = []
        for i, values in enumerate(zip(*settings)):
            key = tuple(map(id, values)) + (id(schedules[i]),)
            if key not in checked:
                try:
                    checked[key] = shell._phases(*values, schedules[i], decay_biases, rule)
                except (ValueError, TypeError) as exc:
                    if not varies:  # one value for all: nothing to point at
                        raise
                    raise type(exc)(f"member {i}: {exc}") from None
            phases.append(checked[key])
        return phases

    def _fit_lanes(self, state, plan: _Plan, threads: int, progress: bool, cancelled, begin):
        """Full batch, members in the vector lanes: chunks of sweeps in which every running
        member keeps one phase."""
        X, T, shared_t, weights, n = plan.X, plan.T, plan.shared_t, plan.weights, plan.n
        phases, totals, tols = plan.phases, plan.totals, plan.tols
        n_members, n_params = len(self), self.topology.n_params
        check_fits(n_members * 2 * n_params * self.dtype.itemsize,
                   "the population's sweep-start copies")
        if weights is not None:  # the core reads each case's weight as one more target
            targets = T[None] if shared_t else T
            members = max(targets.shape[0], weights.shape[0])
            shared_t = members == 1
            check_fits(members * n * (T.shape[-1] + 1) * self.dtype.itemsize,
                       "the members' weighted targets")
            T = np.concatenate([np.broadcast_to(targets, (members,) + targets.shape[1:]),
                                np.broadcast_to(weights.astype(self.dtype)[:, :, None],
                                                (members, n, 1))], axis=2)
            T = np.ascontiguousarray(T[0] if shared_t else T)
        back = np.zeros((n_members, 2 * n_params), self.dtype)
        status = np.zeros(n_members, np.int32)
        n_done = np.zeros(n_members, np.int64)
        # the error log, a block of columns a call: as long as the sweeps run, not the budget
        logs: list[np.ndarray] | None = [] if plan.record_errors else None
        # each member's phases as a table, padded with its last phase: where each ends, its
        # settings (lr, momentum, weight decay)
        width = max(len(member) for member in phases)
        padded = [member + [member[-1]] * (width - len(member)) for member in phases]
        ends = np.cumsum(np.array([[p[0] for p in member] for member in padded], np.int64),
                         axis=1)
        ends[:, :][np.arange(width)[None, :] >= np.array([len(m) for m in phases])[:, None]] = \
            INT64_MAX
        settings = np.array([[p[1:4] for p in member] for member in padded], np.float64)
        rows = np.arange(n_members)
        common: dict[str, Any] = dict(n_samples=n, shared_x=plan.shared_x, shared_t=shared_t, loss=plan.loss,
                      dead_zone=plan.dead_zone, reduction=plan.reduction,
                      weighted=weights is not None, n_threads=threads)
        lr, momentum, decay = (np.zeros(n_members) for _ in range(3))
        sweeps = np.zeros(n_members, np.int64)
        position, adaptive, total = 0, 1, int(totals.max())
        n_decayed = phases[0][0][4]
        begin()  # (what follows can fail only once training has begun: the error log's growth)
        reporter = _Progress(n_members, total) if progress else None
        member_sweep = 0.0  # seconds per member and sweep on one thread, as last measured

        def threads_for(work):  # threads for `work` member-sweeps (see THREADED_CALL_SECONDS)
            return threads if member_sweep * work >= THREADED_CALL_SECONDS else 1

        while position < total:
            _stop_if_cancelled(cancelled)
            running = (status == RUNNING) & (totals > position)
            if not running.any():
                break
            # every running member's phase at `position`; the chunk ends where the first ends
            k = np.minimum((ends <= position).sum(axis=1), width - 1)
            left = int((ends[rows, k] - position)[running].min())
            chunk = min(adaptive, left)
            if left - chunk < chunk // 2:
                # the rest in this call, not a short last one on one thread (THREADED_CALL_SECONDS:
                # W5's last 97 sweeps took 26 ms there against 13 on two)
                chunk = left
            lr[:], momentum[:], decay[:] = settings[rows, k].T
            sweeps[:] = np.where(running, chunk, 0)
            log = None
            if logs is not None:
                check_fits(n_members * (position + chunk) * 8,
                           f"the errors of {n_members:,} members' {position + chunk:,} sweeps")
                log = np.full((n_members, chunk), np.nan)
                logs.append(log)
            work = chunk * int(running.sum())
            common["n_threads"] = used = threads_for(work)
            started = time.perf_counter()
            # only the running members, packed into groups: one that has stopped frees its lane
            _core.population_train(self.topology, self._params, state, back, X, T, lr=lr,
                                   momentum=momentum, weight_decay=decay, stop_tol=tols,
                                   n_sweeps=sweeps, n_decayed=n_decayed, status=status,
                                   n_done=n_done, errors=log, order=np.flatnonzero(running),
                                   **common)
            elapsed = time.perf_counter() - started
            member_sweep = elapsed * used / work
            position += chunk
            # the next call: about CHUNK_SECONDS on the threads (growing CHUNK_GROWTH-fold at most)
            still = max(int(((status == RUNNING) & (totals > position)).sum()), 1)
            adaptive = int(min(CHUNK_GROWTH * chunk, max(1, CHUNK_SECONDS * threads /
                                               max(member_sweep * still, 1e-12))))
            if reporter is not None:
                reporter.update(position, int(((status == RUNNING) & (totals > position)).sum()))
        if reporter is not None:
            reporter.close()
        final_error, within = np.zeros(n_members), np.zeros(n_members, np.int32)
        common["n_threads"] = threads_for(n_members)
        _core.population_train(self.topology, self._params, state, back, X, T, lr=lr,
                               momentum=momentum, weight_decay=decay, stop_tol=tols,
                               n_sweeps=sweeps, n_decayed=n_decayed, status=status,
                               n_done=n_done, final_error=final_error, within=within,
                               **common)
        errors = None
        if logs is not None:
            errors = np.concatenate(logs, axis=1) if logs else np.full((n_members, 0), np.nan)
            errors[np.arange(errors.shape[1])[None, :] >= n_done[:, None]] = np.nan
        return n_done, status, final_error, within, errors

    def _fit_members(self, state, plan: _Plan, threads: int, progress: bool, cancelled,
                     begin):
        """Whole members per thread, each by the compiled loop of Network.fit on one thread."""
        X, T, weights, n, batch_size = plan.X, plan.T, plan.weights, plan.n, plan.batch_size
        n_members, tols = len(self), plan.tols
        workers = min(threads, n_members)
        check_fits(workers * _core.workspace_bytes(
            self.topology, self.dtype, _core.workspace_rows(batch_size, n), n,
            _core.ALL_FEATURES) +
            workers * 4 * state.shape[1] * self.dtype.itemsize,
            f"training {workers} members at a time")
        begin()
        n_done = np.zeros(n_members, np.int64)
        status = np.zeros(n_members, np.int32)
        final_error, within = np.zeros(n_members), np.zeros(n_members, np.int32)
        # each member's error log, as long as its sweeps (run_training grows it)
        logs: list[np.ndarray | None] | None = [None] * n_members if plan.record_errors else None
        codes = {name: code for code, name in enumerate(STATUS_NAMES)}
        reporter = _Progress(n_members, None) if progress else None
        lock = threading.Lock()
        finished = [0]

        def train(i, watch):
            if watch.interrupted() or (cancelled is not None and cancelled.is_set()):
                return
            w = None if weights is None else weights[0 if weights.shape[0] == 1 else i]
            log, done, reason, final, all_within, _ = _core.run_training(
                self.topology, self._params[i], state[i], X if plan.shared_x else X[i],
                T if plan.shared_t else T[i], plan.phases[i], batch_size=batch_size,
                shuffle=plan.shuffle, loss=plan.loss, dead_zone=plan.dead_zone,
                reduction=plan.reduction, sample_weight=w, dropout=plan.dropout,
                stop_tol=float(tols[i]) if tols[i] > 0 else None,
                rng_state=self._shuffle[i: i + 1], n_threads=1, watch=watch)
            n_done[i], final_error[i], within[i] = done, final, all_within
            status[i] = codes.get(reason.removesuffix("_unverified"), 0)
            if logs is not None:
                logs[i] = log
            if reporter is not None:
                with lock:
                    finished[0] += 1
                    reporter.update(finished[0], n_members - finished[0])

        with _core.InterruptWatch() as watch:
            if workers <= 1:
                for i in range(n_members):
                    train(i, watch)
            else:
                with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                    futures = [pool.submit(train, i, watch) for i in range(n_members)]
                    try:
                        for future in futures:
                            future.result()
                    except BaseException:
                        # Ctrl-C here: the workers' compiled loops see it too and stop at a
                        # sweep's end; wait for them, then let it through.
                        for future in futures:
                            future.cancel()
                        concurrent.futures.wait(futures)
                        raise
            if watch.interrupted():
                raise KeyboardInterrupt
            _stop_if_cancelled(cancelled)
        if reporter is not None:
            reporter.close()
        errors = None
        if logs is not None:
            width = int(n_done.max())
            check_fits(n_members * width * 8, f"the errors of {n_members:,} members' sweeps")
            errors = np.full((n_members, width), np.nan)
            for i, log in enumerate(logs):
                if log is not None:
                    errors[i, :len(log)] = log
        return n_done, status, final_error, within, errors

    # -- inference ----------------------------------------------------------------------------

    def predict(self, X, *, n_threads: int | None = None) -> np.ndarray:
        """Every member's outputs, shape (n_members, n_cases, n_outputs): of one shared X, or of
        each member's own (X of shape (n_members, n_cases, n_inputs))."""
        shell, n_members = self._shell(), len(self)
        _threads.requested_threads(n_threads)
        x_array = _as_array(X)
        if x_array is not None and x_array.ndim == 3:
            if x_array.shape[0] != n_members:
                raise ValueError(f"a 3-D X holds one matrix per member ({n_members}), got "
                                 f"shape {x_array.shape}")
            n = x_array.shape[1]
            Xc = _member_rows("X", shell._inputs, x_array, self.dtype)
            inputs = [Xc[i * n:(i + 1) * n] for i in range(n_members)]
        else:
            Xc = shell._inputs(X)
            n = Xc.shape[0]
            inputs = [Xc] * n_members
        check_fits(n_members * n * self.topology.n_outputs * self.dtype.itemsize,
                   f"the outputs of {n_members:,} members for {n:,} cases")
        out = np.empty((n_members, n, self.topology.n_outputs), self.dtype)
        threads = shell._forward_threads(n_threads, n)
        for i in range(n_members):
            out[i] = _core.forward(self.topology, self._params[i], inputs[i], all_layers=False,
                                   n_threads=threads)
        return out

    # -- saving, copying and pickling ---------------------------------------------------------

    def save(self, path) -> None:
        """Write the population to `path` atomically; read it back with :meth:`load`."""
        from .io import save_population
        with self._guard.reading("save the population"):
            save_population(self, path)

    @staticmethod
    def load(path) -> Population:
        """Read a population written by :meth:`save` (ValueError for a damaged file)."""
        from .io import load_population
        return load_population(path)

    def __getstate__(self):
        with self._guard.reading("pickle or copy the population"):
            check_finite_state("cannot pickle the population", params=self._params,
                               velocity=self._velocity)
            return {"topology": self.topology.describe(), "dtype": self.dtype.name,
                    "init": self.init, "init_range": self._init_ranges.copy(),
                    "seeds": self.seeds, "params": self._params.copy(),
                    "velocity": self._velocity.copy(), "shuffle_state": self._shuffle.copy(),
                    "optimizer": self.optimizer}

    def __setstate__(self, state):
        self.topology = Topology.from_description(state["topology"])
        if state["dtype"] not in DTYPES or state["init"] not in INITS or \
                state["optimizer"] not in OPTIMIZERS:
            raise ValueError("a pickled population's dtype, init or optimizer is unknown")
        self.dtype = np.dtype(DTYPES[state["dtype"]])
        self.init, self.optimizer = state["init"], state["optimizer"]
        seeds = [check_int("seeds[i]", s, low=0) for s in state["seeds"]]
        n, n_params = len(seeds), self.topology.n_params
        self._seeds = np.array(seeds, dtype=object)
        self._init_ranges = np.array(state["init_range"], dtype=np.float64)
        self._params = np.array(state["params"], dtype=self.dtype, order="C")
        self._velocity = np.array(state["velocity"], dtype=self.dtype, order="C")
        self._shuffle = np.array(state["shuffle_state"], dtype=np.uint64)
        self._start_rng = None  # not saved: members' starts are drawn again when asked for
        if (n == 0 or self._init_ranges.shape != (n,) or self._shuffle.shape != (n,) or
                self._params.shape != (n, n_params) or
                self._velocity.shape != (n, state_length(self.optimizer, n_params)) or
                not (np.isfinite(self._params).all() and np.isfinite(self._velocity).all())):
            raise ValueError("a pickled population's arrays have the wrong shapes or are not "
                             "finite")
        if self.optimizer == "adam":  # each member's update count: a whole number >= 0
            counts = self._velocity[:, -1].astype(np.float64)
            if (counts < 0).any() or (counts != np.round(counts)).any() or \
                    (self._velocity[:, n_params:-1] < 0).any():
                raise ValueError("a pickled population's Adam states must end with whole update "
                                 "counts >= 0 after second moments >= 0")
        self._guard = _core.TrainingGuard()

    def __repr__(self):
        return (f"Population({len(self)} members, {self.topology!r}, dtype={self.dtype.name}, "
                f"seeds={_seeds_repr(self.seeds)})")


def _seeds_repr(seeds: list[int]) -> str:
    if len(seeds) <= 6:
        return repr(seeds)
    return f"[{seeds[0]}, {seeds[1]}, {seeds[2]}, ..., {seeds[-1]}]"


class _Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, n_members: int, total: int | None):
        self.n_members, self.total, self.last = n_members, total, 0.0
        self.stream = sys.stderr

    def update(self, done: int, running: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        self.last = now
        if self.total is not None:  # sweeps, all members together
            filled, what = int(30 * done / max(self.total, 1)), f"sweep {done:,}/{self.total:,}"
        else:  # members, one after another
            filled, what = int(30 * done / self.n_members), f"{done:,} members done"
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {what}, {running:,} of "
                          f"{self.n_members:,} training   ")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + " " * 78 + "\r")
        self.stream.flush()


# A PCG64 state (numpy's default_rng) packed into words: the 128-bit state and increment, high
# word first, then has_uint32 and uinteger. All zero marks "not kept" (a PCG64 increment is odd).
_START_RNG_WORDS = 6
_START_RNG_BYTES = 8 * _START_RNG_WORDS
# A member's seed and settings as Python objects while a population is built: the seed (an int,
# 32 bytes, and its places in a list and an object array, 16) and its init_range (a float in a
# list, 32).
_MEMBER_OBJECT_BYTES = 80
_WORD = (1 << 64) - 1


def _pack_pcg64(state: dict) -> list[int]:
    if state["bit_generator"] != "PCG64":  # a NumPy whose default_rng differs: not kept
        return [0] * _START_RNG_WORDS
    inner = state["state"]
    return [inner["state"] >> 64, inner["state"] & _WORD, inner["inc"] >> 64, inner["inc"] & _WORD,
            state["has_uint32"], state["uinteger"]]


def _unpack_pcg64(words: np.ndarray) -> dict:
    w = [int(x) for x in words]
    return {"bit_generator": "PCG64", "state": {"state": (w[0] << 64) | w[1],
                                                 "inc": (w[2] << 64) | w[3]},
            "has_uint32": w[4], "uinteger": w[5]}
