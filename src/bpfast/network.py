"""The Network: a topology, its flat parameter arena, and fit / predict over the compiled core."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import _core, _threads
from ._validation import (
    INT64_MAX,
    as_matrix,
    check_bool,
    check_finite_state,
    check_fits,
    check_int,
    check_real,
)
from .schedule import Phase
from .topology import Layer, Tie, Topology
from .units import ACTIVATIONS, LOSSES, REDUCTIONS, check_pairing

DTYPES = {"float32": np.float32, "float64": np.float64}
FLOAT_MAX = {"float32": float(np.finfo(np.float32).max), "float64": float(np.finfo(np.float64).max)}
DEFAULT_LR, DEFAULT_MOMENTUM, DEFAULT_N_SWEEPS = 0.1, 0.9, 1000
OPTIMIZERS = ("momentum", "adam")
INITS = ("uniform", "glorot", "he")


def state_length(optimizer: str, n_params: int) -> int:
    """Values of an optimiser's state: momentum's velocities, or Adam's [m | v | t]."""
    return 2 * n_params + 1 if optimizer == "adam" else n_params


def float_dtype_name(dtype) -> str | None:
    """"float32" or "float64" for whatever NumPy reads as one (np.float32, "f4", "double", ...);
    None for anything else, None itself included (NumPy would read it as float64)."""
    if dtype is None or isinstance(dtype, np.generic):  # np.dtype(np.float64(7)) is float64
        return None
    try:
        name = np.dtype(dtype).name
    except (TypeError, ValueError):
        return None
    return name if name in DTYPES else None


def init_bounds(topo: Topology, init: str) -> np.ndarray:
    """Each parameter's bound for the "glorot" or "he" draw (see Network's docstring)."""
    bounds = np.empty(topo.n_dense)
    for l in range(topo.n_inputs, topo.n_layers):
        edges = range(topo.src_start[l], topo.src_start[l + 1])
        fan_out = int(topo.size[l])
        blocks = [(int(topo.w_offset[e]), fan_out * int(topo.size[topo.src_layer[e]]))
                  for e in edges]
        if topo.shared:  # the connections a unit has, on average (absent ones are not inputs)
            present = sum(int((topo.dense_param[o: o + n] >= 0).sum()) for o, n in blocks)
            fan_in = max(present / fan_out, 1.0)
        else:
            fan_in = float(sum(n for _, n in blocks) // fan_out)
        bound = np.sqrt(6.0 / (fan_in + fan_out if init == "glorot" else fan_in))
        for start, n in blocks:
            bounds[start: start + n] = bound
        if topo.bias_offset[l] >= 0:
            bounds[topo.bias_offset[l]: topo.bias_offset[l] + fan_out] = bound
    if topo.shared:  # a shared parameter takes the bound of its first connection
        slots = np.flatnonzero(topo.dense_param >= 0)
        _, first = np.unique(topo.dense_param[slots], return_index=True)
        bounds = bounds[slots[first]]
    return bounds


def starting_state(topo: Topology, seed: int, init: str, init_range: float, dtype: np.dtype,
                   bounds: np.ndarray | None = None):
    """A network's generator, starting params and shuffling state for `seed`: what
    Network(..., seed=seed) starts from, and each member of a Population. `bounds`: init_bounds,
    if the caller has them already."""
    rng = np.random.default_rng(seed)
    # Drawn in float64 and rounded, so float32 and float64 nets of one seed start alike.
    if init == "uniform":
        params = rng.uniform(-init_range, init_range, topo.n_params).astype(dtype)
    else:
        if bounds is None:
            bounds = init_bounds(topo, init)
        params = (rng.uniform(-1.0, 1.0, topo.n_params) * bounds).astype(dtype)
    return rng, params, int(rng.integers(0, 2**63))


def update_rule(optimizer, beta2, epsilon, clip_norm) -> tuple:
    """fit's update-rule arguments, checked, as the tail of a phase tuple (see _core.train)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    return (optimizer, check_real("beta2", beta2, low=0, high=1, high_open=True),
            check_real("epsilon", epsilon, low=0, low_open=True),
            0.0 if clip_norm is None else check_real("clip_norm", clip_norm, low=0,
                                                     low_open=True))


@dataclass(frozen=True)
class FitResult:
    """What a call to :meth:`Network.fit` did.

    Attributes
    ----------
    errors : ndarray of shape (n_sweeps,), float64
        The error E measured during each sweep: for full-batch sweeps, E of the weights the sweep's
        gradient was computed from; for mini-batch and online sweeps, the sum of the mini-batch
        errors as they were met (each at the weights of its moment). With reduction="mean",
        divided by the cases (or their total weight): the error per case.
    n_sweeps : int
        Sweeps whose weight changes were applied.
    stop_reason : {"solved", "max_sweeps", "stopped"}
        "solved": every output came within `stop_tol` of its target before a sweep;
        "stopped": the callback asked to stop.
    final_error : float
        E of the final weights over all cases, per case with reduction="mean" (NaN if fit was
        called with ``evaluate=False``).
    solved : bool
        Whether every output of the final weights is within `stop_tol` of its target (False
        when no `stop_tol` was given; with ``evaluate=False``, whether training stopped on it).
    """

    errors: np.ndarray
    n_sweeps: int
    stop_reason: str
    final_error: float
    solved: bool

    def __repr__(self) -> str:  # one line: the errors are summarised, not printed
        return (f"FitResult(n_sweeps={self.n_sweeps}, stop_reason={self.stop_reason!r}, "
                f"final_error={self.final_error:.6g}, solved={self.solved}, "
                f"errors=<{len(self.errors)} values>)")


class Network:
    """A layered network of units trained by back-propagation.

    Parameters
    ----------
    sizes : sequence of int, optional
        Shorthand for a plain chain: ``Network([6, 2, 1])`` has an input group ``"input"`` of 6,
        a layer ``"hidden1"`` of 2 and an ``"output"`` layer of 1. Give either `sizes` or
        `inputs` and `layers`.
    inputs : mapping of str to int, optional
        Named input groups and their sizes, e.g. ``{"person": 24, "relation": 12}``. X holds the
        groups side by side in this order (or pass X as a dict of arrays by group name).
    layers : sequence of Layer, optional
        The computed layers, bottom-up; the last one is the output.
    ties : sequence of Tie, optional
        With `inputs` and `layers`: weight blocks, biases or single connections that share
        parameters (see :class:`bpfast.Tie`). :attr:`params` then holds each shared parameter
        once, and :meth:`weights` gives the dense blocks the layers compute with.
    activation, output_activation, bias :
        For the `sizes` shorthand only: the hidden units' activation, the output units'
        (default: the same) and whether layers have biases.
    init_range : float, default 0.3
        With ``init="uniform"``: weights and biases start uniform in (-init_range, init_range)
        (the paper's 0.3).
    init : {"uniform", "glorot", "he"}, default "uniform"
        How the starting weights are drawn. "glorot" (Glorot & Bengio 2010, as scikit-learn's
        MLP draws tanh and ReLU units; it puts 2 for the 6 for logistic units): each layer's
        weights and biases uniform in ±sqrt(6 / (fan_in + fan_out)), fan_in the
        units feeding the layer (over all its sources) and fan_out its size; suits logistic
        and tanh units. "he" (He et al. 2015): ±sqrt(6 / fan_in), for ReLU units. Either way
        one uniform draw of every parameter, scaled per layer, so float32 and float64 nets of
        one seed start alike.
    seed : int or None, default 0
        Seeds the network's own random generator (initial weights, case shuffling).
        None draws fresh entropy; the seed used is kept in ``self.seed``.
    dtype : {"float32", "float64"}, default "float32"
        float32 is the fast default; float64 the exact one.
    """

    def __init__(self, sizes: Sequence[int] | None = None, *,
                 inputs: Mapping[str, int] | None = None, layers: Sequence[Layer] | None = None,
                 ties: Sequence[Tie] = (), activation: str = "logistic",
                 output_activation: str | None = None, bias: bool = True,
                 init_range: float = 0.3, init: str = "uniform", seed: int | None = 0,
                 dtype="float32"):
        if sizes is not None:
            if inputs is not None or layers is not None or ties:
                raise ValueError("give either sizes (a chain) or inputs and layers (a DAG, with "
                                 "any ties), not both")
            self.topology = Topology.chain(sizes, activation, output_activation, bias)
        elif inputs is not None and layers is not None:
            self.topology = Topology(inputs, layers, ties)
        else:
            raise ValueError("describe the network: Network([6, 2, 1]) for a chain, or "
                             "Network(inputs={...}, layers=[Layer(...), ...]) for a DAG")
        dtype_name = float_dtype_name(dtype)
        if dtype_name is None:
            raise ValueError(f"dtype must be float32 or float64 (or a name NumPy reads as one, "
                             f"such as 'f4' or 'double'), got {dtype!r}")
        self.dtype = np.dtype(DTYPES[dtype_name])
        self.init_range = check_real("init_range", init_range, low=0,
                                     high=float(FLOAT_MAX[dtype_name]))
        if not isinstance(init, str) or init not in INITS:
            raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
        self.init = init
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]  # an int when drawn
        self.seed = check_int("seed", seed, low=0)
        n_params = self.topology.n_params
        # the float64 draw, then params and velocities (fit checks what training adds)
        check_fits(n_params * (8 + 2 * self.dtype.itemsize), f"a network of {n_params:,} parameters")
        rng, self._params, shuffle_state = starting_state(
            self.topology, self.seed, init, self.init_range, self.dtype)
        # the generator's state once the start is drawn: kept (saved, pickled), never drawn from
        self._rng_state = rng.bit_generator.state
        self._velocity = np.zeros_like(self._params)
        self.optimizer = "momentum"  # the rule self._velocity is the state of
        # The shuffling generator's state, in a box the compiled core writes back into even when
        # a fit is interrupted.
        self._shuffle_box = np.array([shuffle_state], dtype=np.uint64)
        self._guard = _core.TrainingGuard()

    # -- parameters ---------------------------------------------------------------------------

    # Views, never the arrays themselves: a view cannot be resized (ndarray.resize refuses
    # arrays that do not own their data), so the compiled core's buffers keep their length.

    @property
    def params(self) -> np.ndarray:
        """The flat parameter arena (a writable view): every weight block, then every bias."""
        return self._params.view()

    @property
    def velocity(self) -> np.ndarray:
        """The optimiser's state (a writable view): with ``optimizer="momentum"`` (the paper) the
        velocities Δw(t-1), laid out like :attr:`params`; after a fit with ``optimizer="adam"``,
        Adam's first moments, second moments and update count, ``2 n_params + 1`` values."""
        return self._velocity.view()

    @property
    def _shuffle_state(self) -> int:
        return int(self._shuffle_box[0])

    def weights(self, layer: str, source: str) -> np.ndarray:
        """View of the weights from `source` into `layer`, shape (size(layer), size(source)).
        In a net with ties (:class:`bpfast.Tie`) it is the dense block the layer computes with,
        absent connections 0: a read-only copy, since its values live in shared parameters."""
        offset, shape = self.topology.weight_block(layer, source)
        return self._dense_block(offset, shape)

    def bias(self, layer: str) -> np.ndarray | None:
        """View of `layer`'s bias vector, or None if it has none (a read-only copy in a net
        with ties, as for :meth:`weights`)."""
        block = self.topology.bias_block(layer)
        return None if block is None else self._dense_block(block[0], (block[1],))

    def _dense_block(self, offset: int, shape: tuple) -> np.ndarray:
        size = int(np.prod(shape))
        if not self.topology.shared:
            return self._params[offset: offset + size].reshape(shape)
        block = self.topology.dense(self._params, self.dtype)[offset: offset + size]
        block = block.reshape(shape)
        block.flags.writeable = False
        return block

    def assign_params(self, values) -> None:
        """Copy `values` (shape (n_params,), finite) into the arena. (Not `set_params`: that name
        is scikit-learn's setter of hyper-parameters.)"""
        values = np.asarray(values)
        if values.shape != self._params.shape:
            raise ValueError(f"params must have shape {self._params.shape}, got {values.shape}")
        if values.dtype.kind not in "biuf":
            raise TypeError(f"params must be real numbers, got dtype {values.dtype}")
        converted = np.asarray(values, dtype=self.dtype)
        if not np.isfinite(converted).all():
            raise ValueError(f"params contain NaN or infinite values in {self.dtype.name}")
        self._params[...] = converted

    def reset_velocity(self) -> None:
        """Forget the optimiser's state: the next sweep starts from Δw(0) = 0 (Adam: from zero
        moments, at update 1)."""
        self._velocity[...] = 0

    # -- data ---------------------------------------------------------------------------------

    def _inputs(self, X, keep_float64: bool = False) -> np.ndarray:
        """X checked, as the kernels take it (keep_float64: as_matrix's)."""
        topo = self.topology
        if isinstance(X, Mapping):
            missing = set(topo.input_names) - set(X)
            extra = set(X) - set(topo.input_names)
            if missing or extra:
                raise ValueError(f"X as a dict needs exactly the input groups "
                                 f"{list(topo.input_names)}; missing {sorted(missing)}, "
                                 f"unknown {sorted(extra)}")
            parts = [as_matrix(f"X[{name!r}]", X[name], self.dtype, int(topo.size[i]),
                               f"units in input group {name!r}")
                     for i, name in enumerate(topo.input_names)]
            rows = {p.shape[0] for p in parts}
            if len(rows) > 1:
                raise ValueError(f"the input groups of X have different numbers of rows: "
                                 f"{ {n: p.shape[0] for n, p in zip(topo.input_names, parts)} }")
            return parts[0] if len(parts) == 1 else np.ascontiguousarray(np.hstack(parts))
        return as_matrix("X", X, self.dtype, topo.n_input_cols, "inputs", keep_float64)

    def _targets(self, T, n_rows: int) -> np.ndarray:
        n_out = self.topology.n_outputs
        labels = T if isinstance(T, np.ndarray) else None
        if labels is None and isinstance(T, (list, tuple)):
            try:
                labels = np.asarray(T)
            except (ValueError, TypeError):  # as_matrix reports what is wrong with it
                labels = None
        if (n_out > 1 and labels is not None and labels.ndim == 1
                and labels.dtype.kind in "biuf" and labels.size and np.all(labels == np.round(labels))):
            raise ValueError(f"T is one column of whole numbers but the network has {n_out} "
                             f"output units: if these are class labels 0..{n_out - 1}, one-hot "
                             f"encode them, T = np.eye({n_out})[labels]")
        T = as_matrix("T", T, self.dtype, n_out, "output units")
        if T.shape[0] != n_rows:
            raise ValueError(f"X has {n_rows} rows but T has {T.shape[0]}; they must match")
        activation = self.topology.layers[-1].activation
        reach = ACTIVATIONS[activation].output_range
        if reach is not None:
            low, high = float(T.min()), float(T.max())
            if low < reach[0] or high > reach[1]:
                raise ValueError(
                    f"T has values from {low:g} to {high:g}, but the output units are "
                    f"{activation}, whose outputs lie between {reach[0]:g} and {reach[1]:g}: "
                    f"training would chase targets it cannot reach. Scale the targets into "
                    f"[{reach[0]:g}, {reach[1]:g}] (for classes: one-hot 0/1 targets), or make "
                    f"the outputs linear with output_activation='identity'")
        return T

    # -- training -----------------------------------------------------------------------------

    def fit(self, X, T, *, lr: float | None = None, momentum: float | None = None,
            n_sweeps: int | None = None, weight_decay: float | None = None,
            schedule: Sequence[Phase] | None = None, decay_biases: bool = False,
            batch_size: int | None = None, shuffle: bool = True, loss: str = "sse",
            dead_zone: tuple[float, float] = (0.2, 0.8), reduction: str = "sum",
            sample_weight=None, optimizer: str = "momentum", beta2: float = 0.999,
            epsilon: float = 1e-8, clip_norm: float | None = None, dropout: float = 0.0,
            stop_tol: float | None = None,
            callback: Callable[[int, float], bool | None] | None = None,
            callback_every: int = 100, n_threads: int | None = None,
            evaluate: bool = True) -> FitResult:
        """Train by back-propagation with momentum; the whole run executes in compiled code.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs), or dict of group name -> array
            Any real dtype and layout. A float32 net trains on C-contiguous float64 X as it is,
            rounding each case as it binds it (the same numbers as ``X.astype(np.float32)``),
            so that no float32 copy of X is made.
        T : array-like of shape (n_samples, n_outputs) (1-D allowed for one output)
        lr, momentum, n_sweeps, weight_decay : float, float, int, float
            One phase: ``Δw(t) = -lr ∂E/∂w + momentum Δw(t-1)``, ``w += Δw``, then
            ``w *= 1 - weight_decay``. Defaults 0.1, 0.9, 1000, 0 (the paper's symmetry run).
        schedule : sequence of Phase
            Several phases run back to back, momentum carried across; replaces the four above.
        decay_biases : bool, default False
            Whether weight decay also shrinks biases.
        batch_size : int, optional
            None (default): full-batch sweeps, one update per sweep (the paper). k: an update
            after every k cases; 1 is online learning. With the default reduction="sum" the
            gradient is summed over a batch (E is a sum over cases and lr multiplies the summed
            gradient); reduction="mean" averages it.
        shuffle : bool, default True
            With mini-batches, present the cases in a fresh seeded random order every sweep.
        loss : {"sse", "dead_zone", "cross_entropy"}
            ``E = ½ Σ (y - d)²``; "dead_zone" counts no error for an on target (d = 1) whose output
            is above ``dead_zone[1]`` or an off target (d = 0) whose output is below ``dead_zone[0]``;
            "cross_entropy" is ``-Σ d ln y`` for softmax outputs (each row of T a distribution,
            e.g. one-hot) and ``-Σ [d ln y + (1 - d) ln(1 - y)]`` for logistic ones.
        reduction : {"sum", "mean"}
            "sum" (the paper): the gradient of E, summed over the cases of a batch, so lr must
            shrink as batches grow. "mean": the gradient of E divided by the batch's cases (or
            their total weight), as modern libraries do. The errors reported follow it: E, or E
            per case (per unit of weight).
        sample_weight : array-like of shape (n_samples,), optional
            Each case's weight w >= 0 (not all zero): E sums w times each case's loss. Cases of
            weight 0 take no part in training or in the `stop_tol` test (held-out cases).
        optimizer : {"momentum", "adam"}
            "momentum" is the paper's rule above. "adam" (Kingma & Ba 2015, as scikit-learn's
            MLP writes it) uses `lr` as its step size, `momentum` as β1, `beta2` and `epsilon`;
            weight decay then shrinks the weights after each step (decoupled, as in AdamW).
            Switching rule between fits starts the new rule's state from zero.
        clip_norm : float, optional
            Before each update, scale the gradient down to this Euclidean norm (of all of it)
            if it is longer.
        dropout : float in [0, 1), default 0
            While training, drop each hidden unit's output for a case with this probability
            (and scale the kept ones by 1 / (1 - dropout)), with fresh masks for every batch
            drawn from the network's generator: the same on any thread count. `predict`,
            `error` and the `stop_tol` test see the whole network.
        stop_tol : float, optional
            Stop before a sweep once every output is within `stop_tol` of its target.
        callback : callable(sweep, error) -> bool, optional
            Called every `callback_every` sweeps with the sweeps done so far and the latest
            sweep's error (as in ``FitResult.errors``: per case, or per unit of weight, with
            reduction="mean"); returning True stops training. Python is entered only then (and
            every few tens of milliseconds to notice Ctrl-C, which raises KeyboardInterrupt
            leaving the weights of the last finished sweep).
        n_threads : int, optional
            Threads to use. The default is what the OpenMP runtime would use (the cores this
            process may run on, OMP_NUM_THREADS, a CPU quota, threadpoolctl limits), and falls
            back to one thread, chunk by chunk, whenever threads are measured not to pay (a busy
            machine); an explicit count is used as given (RuntimeError if the system cannot
            start that many threads). The result does not depend on it. Small batches run on one
            thread regardless, and so does a process forked after bpfast had used threads.
        evaluate : bool, default True
            Measure the final weights over every case for ``final_error`` and ``solved``: one
            more forward pass over the data (for a fit of one mini-batch epoch, about a third of
            its time). False skips it: ``final_error`` is NaN, and ``solved`` is True only if
            training stopped on `stop_tol` (which still stops it); for loops of short fits that
            read only ``errors``. Without
            that pass or a `stop_tol`, mini-batch training holds buffers for one batch only,
            rather than for 8,192 cases.

        Returns
        -------
        FitResult

        Raises
        ------
        FloatingPointError
            If the error or a weight becomes NaN or infinite (the learning rate is too large, or
            the data overflow the dtype). The network is left with the weights, velocities and
            shuffling state it had at the start of the last sweep whose error and weights were
            finite; the error's ``n_sweeps`` counts the sweeps of this fit that it holds (a
            callback may have seen one or two more).
        KeyboardInterrupt
            On Ctrl-C (noticed within a sweep too), with the weights of the last finished sweep.
        MemoryError
            Before allocating, if the run's buffers exceed the memory available now.
        RuntimeError
            If this network is being trained already (by another thread, or by this fit's own
            callback).
        """
        decay_biases = check_bool("decay_biases", decay_biases)
        shuffle = check_bool("shuffle", shuffle)
        rule = update_rule(optimizer, beta2, epsilon, clip_norm)
        phases = self._phases(lr, momentum, n_sweeps, weight_decay, schedule, decay_biases, rule)
        dropout = check_real("dropout", dropout, low=0, high=1, high_open=True)
        self._check_loss(loss, reduction)
        dead_zone = self._dead_zone(dead_zone)
        if stop_tol is not None:
            stop_tol = check_real("stop_tol", stop_tol, low=0, low_open=True)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        callback_every = check_int("callback_every", callback_every, low=1, high=INT64_MAX)
        evaluate = check_bool("evaluate", evaluate)
        _threads.requested_threads(n_threads)  # a bad n_threads is reported before the data
        X = self._inputs(X, keep_float64=True)
        T = self._targets(T, X.shape[0])
        self._check_targets_for(loss, T)
        weights = self._sample_weight(sample_weight, X.shape[0])
        n = X.shape[0]
        batch_size = n if batch_size is None else check_int("batch_size", batch_size, low=1,
                                                            high=INT64_MAX)
        batch_size = min(batch_size, n)
        if not (np.isfinite(self._params).all() and np.isfinite(self._velocity).all()):
            raise ValueError("the network's params or velocity contain NaN or infinite values "
                             "(written through net.params or a weights() view?); set finite "
                             "values with assign_params() or call reset_velocity()")
        # A new rule starts from a zero state, which becomes the network's as training begins
        # (so a callback sees, saves or resets the state being trained); a fit refused before
        # (another thread's fit holds the net, not enough memory) leaves the old state as it was.
        switching = optimizer != self.optimizer
        state = np.zeros(state_length(optimizer, self.topology.n_params), self.dtype) \
            if switching else self._velocity

        def begin():
            self._velocity, self.optimizer = state, optimizer
        per_case = 1.0
        if reduction == "mean":
            per_case = n if weights is None else float(weights.sum(dtype=np.float64))
            if callback is not None:
                user_callback = callback
                callback = lambda sweep, error: user_callback(sweep, error / per_case)
        threads = _threads.threads_for(n_threads, 3 * batch_size * self.topology.n_weights)
        # The default may fall back to one thread chunk by chunk when threads do not pay (a busy
        # machine); an explicit n_threads is used as given.
        chooser = _threads.ThreadChooser(threads) if n_threads is None and threads > 1 else None

        errors, done, status, final_error, within, _ = _core.run_training(
            self.topology, self._params, state, X, T, phases,
            batch_size=batch_size, shuffle=shuffle, loss=loss, dead_zone=dead_zone,
            reduction=reduction, sample_weight=weights, dropout=dropout,
            stop_tol=stop_tol, rng_state=self._shuffle_box, callback=callback,
            callback_every=callback_every, n_threads=threads, chooser=chooser,
            guard=self._guard, memory_check=check_fits, evaluate=evaluate,
            on_start=begin if switching else None)
        if status.startswith("non_finite"):
            error = FloatingPointError(self._divergence_message(status, done, final_error, phases))
            error.n_sweeps = done  # type: ignore[attr-defined]
            raise error
        if reduction == "mean":
            errors, final_error = errors / per_case, final_error / per_case
        return FitResult(errors=errors, n_sweeps=done, stop_reason=status,
                         final_error=final_error,
                         solved=stop_tol is not None and (bool(within) or status == "solved"))

    def _divergence_message(self, status, done, final_error, phases) -> str:
        if not np.isfinite(final_error):
            return (f"the error of the starting weights is already NaN or infinite in "
                    f"{self.dtype.name}: the outputs or targets overflow. Scale X and T, or use "
                    f"dtype='float64'; no training was done.")
        advice = (f"Try a smaller learning rate (the phases used lr = "
                  f"{sorted({p[1] for p in phases})}).")
        if status.endswith("_unverified"):
            return (f"training diverged. Replaying the last sweeps from a snapshot did not "
                    f"reproduce the run (did X or T change during fit?), so the network holds "
                    f"the snapshot itself: the weights from the start of sweep {done + 1}. "
                    + advice)
        what = "a weight (or its optimiser state)" if status == "non_finite_weights" \
            else "the error"
        where = done + 1 if status == "non_finite_weights" else done + 2
        return (f"training diverged: {what} became NaN or infinite in sweep {where} of this fit. "
                f"The network holds the weights from the start of sweep {done + 1}, the last "
                f"with a finite error and weights. " + advice)

    def _check_loss(self, loss, reduction) -> None:
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
        if not isinstance(reduction, str) or reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
        check_pairing(self.topology.layers[-1].activation, loss)

    def _check_targets_for(self, loss, T) -> None:
        if loss == "dead_zone" and not np.isin(T, (0, 1)).all():
            raise ValueError("loss='dead_zone' needs targets that are 0 or 1 (the paper's rule "
                             "says which are 'on' and which 'off'); use loss='sse' otherwise")
        if self.topology.layers[-1].activation == "softmax":
            sums = T.sum(axis=1, dtype=np.float64)
            if not np.allclose(sums, 1, rtol=0, atol=1e-4 if self.dtype == np.float32 else 1e-10):
                raise ValueError(f"softmax outputs need each row of T to be a distribution that "
                                 f"sums to 1 (e.g. one-hot); row sums range from {sums.min():g} "
                                 f"to {sums.max():g}")

    def _sample_weight(self, sample_weight, n_rows):
        """None, or the weights as a float64 array of n_rows finite values >= 0, not all 0."""
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight)
        if w.dtype.kind not in "biuf":
            raise TypeError(f"sample_weight must be numbers, got dtype {w.dtype}")
        w = w.astype(np.float64)
        if w.shape != (n_rows,):
            raise ValueError(f"sample_weight must have one value per case, shape ({n_rows},); "
                             f"got shape {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any() or not (w > 0).any():
            raise ValueError("sample_weight must be finite, >= 0 and not all 0")
        as_dtype = w.astype(self.dtype)
        if not np.isfinite(as_dtype).all():
            raise ValueError(f"sample_weight overflows {self.dtype.name}")
        if ((w > 0) & (as_dtype == 0)).any():  # the core would train those cases as weight 0
            tiny = float(np.finfo(self.dtype).smallest_subnormal)
            raise ValueError(f"sample_weight has positive values that are 0 in "
                             f"{self.dtype.name} (below {tiny:.3g}); scale the weights up or use "
                             f"dtype='float64'")
        with np.errstate(over="ignore"):
            total = as_dtype.sum(dtype=self.dtype)
        if not np.isfinite(total):
            raise ValueError(f"the sum of sample_weight overflows {self.dtype.name}; scale the "
                             f"weights down or use dtype='float64'")
        return w

    def _phases(self, lr, momentum, n_sweeps, weight_decay, schedule, decay_biases, rule):
        n_decayed = self.topology.n_params if decay_biases else self.topology.n_weights
        if schedule is not None:
            if any(v is not None for v in (lr, momentum, n_sweeps, weight_decay)):
                raise ValueError("give either a schedule or lr/momentum/n_sweeps/weight_decay, "
                                 "not both; put those values in the schedule's Phases")
            try:
                schedule = list(schedule)
            except TypeError:
                raise TypeError(f"schedule must be a list of bpfast.Phase, got {schedule!r}") \
                    from None
            if not schedule or not all(isinstance(p, Phase) for p in schedule):
                raise TypeError("schedule must be a non-empty list of bpfast.Phase")
        else:
            schedule = [Phase(DEFAULT_N_SWEEPS if n_sweeps is None else n_sweeps,
                              DEFAULT_LR if lr is None else lr,
                              DEFAULT_MOMENTUM if momentum is None else momentum,
                              0.0 if weight_decay is None else weight_decay)]
        if sum(p.n_sweeps for p in schedule) > INT64_MAX:
            raise ValueError(f"the schedule's phases add up to more than {INT64_MAX} sweeps")
        largest = float(np.finfo(self.dtype).max)
        for p in schedule:
            if p.lr > largest:
                raise ValueError(f"lr = {p.lr} is infinite in {self.dtype.name} (at most "
                                 f"{largest:.3g}); use a smaller learning rate")
        return [(p.n_sweeps, p.lr, p.momentum, p.weight_decay, n_decayed) + rule
                for p in schedule]

    @staticmethod
    def _dead_zone(dead_zone):
        try:
            off, on = dead_zone
        except (TypeError, ValueError):
            raise ValueError(f"dead_zone must be a pair (off, on), got {dead_zone!r}") from None
        off = check_real("dead_zone[0]", off, low=0, high=1)
        on = check_real("dead_zone[1]", on, low=0, high=1)
        if not off < on:
            raise ValueError(f"dead_zone must have off < on, got {dead_zone!r}")
        return off, on

    # -- inference ----------------------------------------------------------------------------

    def predict(self, X, *, n_threads: int | None = None) -> np.ndarray:
        """The output layer's activations, shape (n_samples, n_outputs), in the net's dtype.

        Allowed before any `fit`: it gives the outputs of the initial random weights. A float32
        net takes a C-contiguous float64 X as it is, rounding a chunk of rows at a time (the
        same outputs as for ``X.astype(np.float32)``, without that copy of X)."""
        _threads.requested_threads(n_threads)
        X = self._inputs(X, keep_float64=True)
        self._check_forward_memory(X.shape[0], self.topology.n_outputs,
                                   rounds_x=X.dtype != self.dtype)
        return _core.forward(self.topology, self._params, X, all_layers=False,
                             n_threads=self._forward_threads(n_threads, X.shape[0]))

    def forward(self, X, *, n_threads: int | None = None) -> dict[str, np.ndarray]:
        """Every layer's activations by name (input groups included), each (n_samples, size)."""
        _threads.requested_threads(n_threads)
        X = self._inputs(X)
        topo = self.topology
        self._check_forward_memory(X.shape[0], int(topo.size[topo.n_inputs:].sum()))
        acts = _core.forward(self.topology, self._params, X, all_layers=True,
                             n_threads=self._forward_threads(n_threads, X.shape[0]))
        return dict(zip(self.topology.names, acts))

    def _check_forward_memory(self, n_rows: int, n_out_units: int,
                              rounds_x: bool = False) -> None:
        """rounds_x: X is float64 for a float32 net, rounded into a buffer a chunk at a time."""
        rows = min(n_rows, _core.FORWARD_CHUNK_ROWS)
        chunk_copy = rows * self.topology.n_input_cols * self.dtype.itemsize if rounds_x else 0
        check_fits(n_rows * n_out_units * self.dtype.itemsize + chunk_copy +
                   _core.workspace_bytes(self.topology, self.dtype, rows, 0, 0),
                   f"the outputs for {n_rows:,} cases")

    def error(self, X, T, *, loss: str = "sse", dead_zone=(0.2, 0.8), reduction: str = "sum",
              sample_weight=None, n_threads: int | None = None) -> float:
        """E of the current weights over the given cases (no gradients), as `fit` measures it:
        the loss summed over the cases (times their weights), or per case for 'mean'."""
        self._check_loss(loss, reduction)
        dead_zone = self._dead_zone(dead_zone)
        _threads.requested_threads(n_threads)
        X = self._inputs(X)
        T = self._targets(T, X.shape[0])
        self._check_targets_for(loss, T)
        weights = self._sample_weight(sample_weight, X.shape[0])
        self._check_forward_memory(X.shape[0], 0)
        error, _ = _core.evaluate(self.topology, self._params, X, T, loss=loss,
                                  dead_zone=dead_zone, sample_weight=weights,
                                  n_threads=self._forward_threads(n_threads, X.shape[0]))
        if reduction == "mean":
            error /= X.shape[0] if weights is None else weights.sum()
        return float(error)

    def _forward_threads(self, n_threads, n_rows):
        return _threads.threads_for(n_threads, min(n_rows, _core.FORWARD_CHUNK_ROWS) *
                                    self.topology.n_weights)

    # -- saving, copying and pickling ---------------------------------------------------------

    def save(self, path) -> None:
        """Write the network to `path` atomically; read it back with :func:`bpfast.load`.
        The format is documented in :mod:`bpfast.io`."""
        from .io import save
        with self._guard.reading("save the network"):
            save(self, path)

    def __getstate__(self):
        with self._guard.reading("pickle or copy the network"):
            check_finite_state("cannot pickle the network", params=self._params,
                               velocity=self._velocity)
            return {"topology": self.topology.describe(), "dtype": self.dtype.name,
                    "init_range": self.init_range, "init": self.init, "seed": self.seed,
                    "rng": self._rng_state, "params": self._params.copy(),
                    "velocity": self._velocity.copy(), "shuffle_state": self._shuffle_state,
                    "optimizer": self.optimizer}

    def __setstate__(self, state):
        topology = state["topology"]  # a description, or (from a Population) a Topology to share
        topology = topology if isinstance(topology, Topology) else \
            Topology.from_description(topology)
        dtype = np.dtype(state["dtype"])
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]  # checks it
        params = np.array(state["params"], dtype=dtype, order="C")
        velocity = np.array(state["velocity"], dtype=dtype, order="C")
        optimizer = state.get("optimizer", "momentum")  # older pickles: the paper's rule
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"a pickled network's optimizer must be one of {list(OPTIMIZERS)}, "
                             f"got {optimizer!r}")
        n_params = topology.n_params
        for name, array, length in (("params", params, n_params),
                                    ("velocity", velocity, state_length(optimizer, n_params))):
            if array.shape != (length,) or not np.isfinite(array).all():
                raise ValueError(f"a pickled network's {name} must be {length} finite values, "
                                 f"got " + (f"shape {array.shape}" if array.shape != (length,)
                                            else "NaN or infinite values"))
        if optimizer == "adam":
            count = float(velocity[-1])  # Adam's updates so far: a whole number >= 0
            if count < 0 or count != int(count) or (velocity[n_params:-1] < 0).any():
                raise ValueError(f"a pickled network's Adam state must end with a whole update "
                                 f"count >= 0 after second moments >= 0, got count {count}")
        self._assign(topology, dtype, state["init_range"], state.get("init", "uniform"),
                     state["seed"], rng.bit_generator.state, params, velocity,
                     state["shuffle_state"], optimizer)

    def _assign(self, topology, dtype, init_range, init, seed, rng_state, params, velocity,
                shuffle_state, optimizer) -> None:
        """Every attribute from parts already checked (unpickling checks them first; a
        Population's members are its own): `params` and `velocity` are taken, not copied."""
        self.topology, self.dtype = topology, dtype
        self.init_range, self.init, self.seed = init_range, init, seed
        self._rng_state = rng_state
        self._params, self._velocity, self.optimizer = params, velocity, optimizer
        self._shuffle_box = np.array([shuffle_state], dtype=np.uint64)
        self._guard = _core.TrainingGuard()

    def __repr__(self):
        return f"Network({self.topology!r}, dtype={self.dtype.name}, seed={self.seed})"
