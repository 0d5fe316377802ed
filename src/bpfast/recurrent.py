"""Recurrent networks, trained as the paper says: run for T steps, a recurrent net *is* a layered
net of T + 1 layers whose corresponding weights are tied (Nature 1986, Fig. 5).

:class:`RecurrentNetwork` builds that layered net (:func:`unrolled_topology`) and is a
:class:`~bpfast.Network` of it, so everything a network does (the compiled forward and backward
passes, full-batch or mini-batch sweeps over sequences, the momentum rule and Adam, phases, the
stop rule, threads, Ctrl-C, saving) is back-propagation through time with stored activations.
Its gradient is computed by ``csrc/recurrent.inc.c``, which knows the unrolled net is a
recurrent one (:class:`Recurrence`, set on the topology): one product per step, and each tied
matrix's gradient in one product over all steps, instead of one per layer, block and copy.

The unrolled net, for inputs x, hidden units h and outputs y:

- input groups ``x1 .. xT``: step t's inputs (X of shape (n_sequences, T, n_inputs));
- layers ``h1 .. hT``: ``h_t = f(W_in x_t + W_rec h_(t-1) + b_h)``, the state starting at 0 (so
  ``h1`` has no recurrent input); with ``output_feedback``, also ``+ W_fb y_(t-1)``;
- ``y``: every step's outputs side by side, ``y_t = g(W_out h_t + b_y)``: one layer of
  T * n_outputs units fed by every ``h_t`` through a block in which only step t's rows are
  present (the rest are absent connections);
- with ``output_feedback``, layers ``o1 .. o(T-1)`` recompute ``y_t`` from ``h_t`` (tied to
  ``W_out`` and ``b_y``) to feed ``h_(t+1)``: the same value computed twice, so the gradient of
  every use adds up exactly as in the recurrent form.

Each of ``W_in``, ``W_rec``, ``W_out``, ``W_fb``, ``b_h`` and ``b_y`` is one shared parameter block
(a :class:`~bpfast.Tie`) whose gradient is the sum of its copies' gradients, or with
``gradient="mean"`` their average over the steps that use it, the paper's wording.

Targets are (n_sequences, T, n_outputs); a step or an output with no target (PDP Table 11: the
first two outputs of each sequence are not trained) is given by ``mask`` (False: no target) or
as NaN in the targets. It carries no error and takes no part in the stop test.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from ._validation import check_bool, check_fits, check_int, check_real
from .network import FitResult, Network
from .topology import Layer, Tie, Topology
from .units import ACTIVATION_NUMBERS, ACTIVATIONS

MATRICES = ("input", "recurrent", "output", "feedback")


def _spec(n_inputs, n_hidden, n_outputs, n_steps, output_feedback, activation,
          output_activation, bias, gradient) -> dict:
    """The recurrent net's description, checked."""
    spec = {"n_inputs": check_int("n_inputs", n_inputs, low=1),
            "n_hidden": check_int("n_hidden", n_hidden, low=1),
            "n_outputs": check_int("n_outputs", n_outputs, low=1),
            "n_steps": check_int("n_steps", n_steps, low=2, high=10_000),
            "output_feedback": check_bool("output_feedback", output_feedback),
            "activation": activation,
            "output_activation": activation if output_activation is None else output_activation,
            "bias": check_bool("bias", bias), "gradient": gradient}
    for key in ("activation", "output_activation"):
        if not isinstance(spec[key], str) or spec[key] not in ACTIVATIONS or spec[key] == "softmax":
            raise ValueError(f"{key} must be one of "
                             f"{sorted(set(ACTIVATIONS) - {'softmax'})}, got {spec[key]!r}")
    if gradient not in ("sum", "mean"):
        raise ValueError(f"gradient must be 'sum' or 'mean', got {gradient!r}")
    return spec


def unrolled_topology(n_inputs: int, n_hidden: int, n_outputs: int, n_steps: int, *,
                      output_feedback: bool = False, activation: str = "logistic",
                      output_activation: str | None = None, bias: bool = True,
                      gradient: str = "sum") -> Topology:
    """The layered net with tied weights that a recurrent net run for `n_steps` steps is (see
    the module docstring)."""
    s = _spec(n_inputs, n_hidden, n_outputs, n_steps, output_feedback, activation,
              output_activation, bias, gradient)
    T, H, O, feedback = s["n_steps"], s["n_hidden"], s["n_outputs"], s["output_feedback"]
    # The output layer holds every step's outputs, fed by every step's hidden units through a
    # block of T * O x H connections (step t's rows present): T**2 O H of them, with their maps.
    check_fits(24 * T * T * O * H, f"the unrolled net of {T} steps")
    inputs = {f"x{t}": s["n_inputs"] for t in range(1, T + 1)}
    layers = []
    for t in range(1, T + 1):
        sources = [f"x{t}"] + ([f"h{t - 1}"] if t > 1 else []) + \
                  ([f"o{t - 1}"] if feedback and t > 1 else [])
        layers.append(Layer(f"h{t}", H, sources, s["activation"], s["bias"]))
        if feedback and t < T:
            layers.append(Layer(f"o{t}", O, [f"h{t}"], s["output_activation"], s["bias"]))
    layers.append(Layer("y", T * O, [f"h{t}" for t in range(1, T + 1)], s["output_activation"],
                        s["bias"]))
    mean = s["gradient"] == "mean"
    # Each block of y from h_t holds W_out in step t's rows; absent elsewhere.
    out_index = []
    for t in range(T):
        m = -np.ones((T * O, H), dtype=np.int64)
        m[t * O: (t + 1) * O] = np.arange(O * H).reshape(O, H)
        out_index.append(m)
    out_blocks = [("y", f"h{t}") for t in range(1, T + 1)]
    copies = [np.arange(O * H).reshape(O, H)] * (T - 1) if feedback else []
    out_tie = Tie(weights=out_blocks + [(f"o{t}", f"h{t}") for t in range(1, T)] * feedback,
                  index=out_index + copies,
                  # the mean over the T steps: the feedback copies recompute the same y_t
                  gradient=(1.0 / T if mean else "sum") if feedback else s["gradient"])
    ties = [Tie(weights=[(f"h{t}", f"x{t}") for t in range(1, T + 1)], gradient=s["gradient"]),
            Tie(weights=[(f"h{t}", f"h{t - 1}") for t in range(2, T + 1)],
                gradient=s["gradient"]),
            out_tie]
    if feedback:
        ties.append(Tie(weights=[(f"h{t}", f"o{t - 1}") for t in range(2, T + 1)],
                        gradient=s["gradient"]))
    if s["bias"]:
        ties.append(Tie(biases=[f"h{t}" for t in range(1, T + 1)], gradient=s["gradient"]))
        ties.append(Tie(biases=["y"] + [f"o{t}" for t in range(1, T)] * feedback,
                        index=[np.tile(np.arange(O), T)] + [np.arange(O)] * ((T - 1) * feedback),
                        gradient=(1.0 / T if mean else "sum") if feedback else s["gradient"]))
    return Topology(inputs, layers, ties)


class Recurrence(NamedTuple):
    """What the core needs to train an unrolled net as the recurrent net it is (csrc/bpfast.h:
    bp_recurrence): the sizes, the unit functions' numbers, and where each shared matrix starts
    in the parameters (row-major), -1 for absent biases."""
    n_steps: int
    n_inputs: int
    n_hidden: int
    n_outputs: int
    hidden_activation: int
    output_activation: int
    w_in: int
    w_rec: int
    w_out: int
    b_hidden: int
    b_output: int


class RecurrentNetwork(Network):
    """A recurrent net of input, hidden and output units, trained by back-propagation through
    time: a :class:`~bpfast.Network` of its unrolled, tied layered net (module docstring).

    Parameters
    ----------
    n_inputs, n_hidden, n_outputs : int
        Units of each kind.
    n_steps : int
        T, the time steps every sequence runs for (at least 2). The unrolled net's output layer
        holds all T steps' outputs, so its connections (most of them absent, and skipped by the
        core) grow as T**2: long sequences of many units raise MemoryError when they would not
        fit.
    output_feedback : bool, default False
        Whether the outputs of step t also feed the hidden units at step t + 1 (weights W_fb).
    activation, output_activation : str, default "logistic"
        The hidden and output units' functions (output_activation defaults to activation).
    bias : bool, default True
    gradient : {"sum", "mean"}, default "sum"
        A tied weight's gradient: the sum over its copies (the steps), or the paper's average.
    init_range, init, seed, dtype :
        As for :class:`~bpfast.Network`.

    X is (n_sequences, T, n_inputs) and targets are (n_sequences, T, n_outputs); `fit`, `error`
    take a `mask` (n_sequences, T, n_outputs) or (T, n_outputs), False where there is no target,
    or NaN targets. :attr:`params` holds each shared block once; :meth:`matrices` names them.
    """

    def __init__(self, n_inputs: int, n_hidden: int, n_outputs: int, n_steps: int, *,
                 output_feedback: bool = False, activation: str = "logistic",
                 output_activation: str | None = None, bias: bool = True, gradient: str = "sum",
                 init_range: float = 0.3, init: str = "uniform", seed: int | None = 0,
                 dtype="float32"):
        self.recurrent = _spec(n_inputs, n_hidden, n_outputs, n_steps, output_feedback,
                               activation, output_activation, bias, gradient)
        topology = unrolled_topology(**self.recurrent)
        super().__init__(inputs={n: int(topology.size[i])
                                 for i, n in enumerate(topology.input_names)},
                         layers=topology.layers, ties=topology.ties, init_range=init_range,
                         init=init, seed=seed, dtype=dtype)
        self._mark_recurrent()

    def _mark_recurrent(self) -> None:
        """Set topology.recurrence, so that training runs the unrolled net as a recurrent net
        (csrc/recurrent.inc.c: the same values, several times faster), after checking that each
        shared matrix is one row-major run of the parameters. Output feedback is left to the
        unrolled net's layers."""
        topo, r = self.topology, self.recurrent
        topo.recurrence, topo._compiled = None, None
        if r["output_feedback"]:
            return
        where = self.matrices(np.arange(topo.n_params))  # each matrix's parameter numbers
        names = ("input", "recurrent", "output") + ("hidden_bias", "output_bias") * r["bias"]
        starts = {}
        for name in names:
            m = where[name]
            starts[name] = int(m.flat[0])
            if not np.array_equal(m, starts[name] + np.arange(m.size).reshape(m.shape)):
                raise AssertionError(f"the unrolled net's {name} matrix is not one run")
        if sum(where[name].size for name in names) != topo.n_params:
            raise AssertionError("the unrolled net has parameters beside its matrices")
        topo.recurrence = Recurrence(
            r["n_steps"], r["n_inputs"], r["n_hidden"], r["n_outputs"],
            ACTIVATION_NUMBERS[r["activation"]], ACTIVATION_NUMBERS[r["output_activation"]],
            starts["input"], starts["recurrent"], starts["output"],
            starts.get("hidden_bias", -1), starts.get("output_bias", -1))

    @property
    def n_steps(self) -> int:
        return self.recurrent["n_steps"]

    # -- the recurrent view of the unrolled net ----------------------------------------------

    def matrices(self, params=None) -> dict:
        """The recurrent net's weights by name: "input" W_in (n_hidden, n_inputs), "recurrent"
        W_rec (n_hidden, n_hidden), "output" W_out (n_outputs, n_hidden), "feedback" W_fb
        (n_hidden, n_outputs) if output_feedback, and "hidden_bias", "output_bias" if bias.
        Copies, of :attr:`params` or of another vector laid out like it (e.g. a gradient)."""
        topo = self.topology
        params = self._params if params is None else np.asarray(params)
        if params.shape != (topo.n_params,):
            raise ValueError(f"params must have shape ({topo.n_params},), got {params.shape}")
        dense = topo.dense(params, params.dtype)

        def block(layer, source, rows=None):
            offset, shape = topo.weight_block(layer, source)
            w = dense[offset: offset + shape[0] * shape[1]].reshape(shape)
            return (w if rows is None else w[rows]).copy()

        O = self.recurrent["n_outputs"]
        out = {"input": block("h1", "x1"), "recurrent": block("h2", "h1"),
               "output": block("y", "h1", slice(0, O))}
        if self.recurrent["output_feedback"]:
            out["feedback"] = block("h2", "o1")
        if self.recurrent["bias"]:
            for name, layer, n in (("hidden_bias", "h1", self.recurrent["n_hidden"]),
                                   ("output_bias", "y", O)):
                offset = int(topo.bias_offset[topo.index[layer]])
                out[name] = dense[offset: offset + n].copy()
        return out

    def states(self, X, *, n_threads: int | None = None) -> np.ndarray:
        """The hidden units' outputs at every step, shape (n_sequences, T, n_hidden)."""
        layers = self.forward(X, n_threads=n_threads)
        return np.stack([layers[f"h{t}"] for t in range(1, self.n_steps + 1)], axis=1)

    def predict(self, X, *, n_threads: int | None = None) -> np.ndarray:
        """The outputs at every step, shape (n_sequences, T, n_outputs)."""
        y = super().predict(X, n_threads=n_threads)
        return y.reshape(y.shape[0], self.n_steps, self.recurrent["n_outputs"])

    # -- data: sequences in, the unrolled net's rows out --------------------------------------

    def _sequences(self, name: str, A, width: int) -> np.ndarray:
        T = self.n_steps
        if not isinstance(A, np.ndarray):
            try:
                with warnings.catch_warnings():  # NumPy < 1.24 made ragged nesting an object
                    warnings.simplefilter("ignore")  # array, with a deprecation warning
                    A = np.asarray(A)
                if A.dtype == object:
                    raise ValueError("its nested sequences are ragged, or not numbers")
            except (ValueError, TypeError) as exc:  # ragged nesting
                raise ValueError(f"{name} could not be read as an array of shape (n_sequences, "
                                 f"{T}, {width}): {exc}") from None
        if A.ndim != 3 or A.shape[1:] != (T, width):
            raise ValueError(f"{name} must have shape (n_sequences, {T}, {width}) (sequences of "
                             f"{T} steps of {width} values), got shape {A.shape}")
        return A.reshape(A.shape[0], T * width)

    def _inputs(self, X, keep_float64: bool = False) -> np.ndarray:
        if isinstance(X, dict):
            raise TypeError("X of a RecurrentNetwork is one array of shape "
                            "(n_sequences, n_steps, n_inputs)")
        return super()._inputs(self._sequences("X", X, self.recurrent["n_inputs"]), keep_float64)

    def _target_sequences(self, T) -> np.ndarray:
        """T checked for its shape and kind of numbers, as rows (n_sequences, n_steps * n_out)."""
        T = self._sequences("T", T, self.recurrent["n_outputs"])
        if T.dtype.kind not in "biuf":
            raise TypeError(f"T must be real numbers, got dtype {T.dtype}")
        return T

    def _targets(self, T, n_rows: int) -> np.ndarray:
        T = self._target_sequences(T)
        missing = np.isnan(T)
        if missing.all():
            raise ValueError("every target is NaN (masked): there is nothing to train on")
        # the checks of a feed-forward net's targets, on the targets that are there
        filled = super()._targets(np.where(missing, np.nanmax(T), T), n_rows)
        filled[missing] = np.nan
        return filled

    def _check_targets_for(self, loss, T) -> None:
        super()._check_targets_for(loss, np.where(np.isnan(T), 0, T))

    def _masked(self, T, mask):
        if mask is None:
            return T
        n_out = self.recurrent["n_outputs"]
        # checked as fit checks T without a mask (complex targets were cast to their real part)
        T = self._target_sequences(T).reshape(-1, self.n_steps, n_out).astype(np.float64)
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"mask must be an array of bools (True: the step has a target), got "
                            f"dtype {mask.dtype}")
        if mask.shape not in ((self.n_steps, n_out), T.shape):
            raise ValueError(f"mask must have shape {T.shape} or ({self.n_steps}, {n_out}), got "
                             f"{mask.shape}")
        return np.where(mask, T, np.nan)

    def fit(self, X, T, *, mask=None, **options) -> FitResult:
        """Back-propagation through time; `options` are :meth:`Network.fit`'s (batch_size
        counts sequences). `mask` (False: no target) or NaN targets leave steps untrained.
        `dropout` drops hidden units, each step's with masks of its own; a net with output
        feedback refuses it (the unrolled net's copies of the outputs, fed back, would be
        dropped as if they were hidden units)."""
        if self.recurrent["output_feedback"] and "dropout" in options:
            dropout = check_real("dropout", options["dropout"], low=0, high=1, high_open=True)
            if dropout > 0:
                raise ValueError("dropout is not supported with output_feedback: the outputs fed "
                                 "back would be dropped too; train without dropout, or without "
                                 "output feedback")
        return super().fit(X, self._masked(T, mask), **options)

    def error(self, X, T, *, mask=None, **options) -> float:
        """E over the sequences, as `fit` measures it (masked steps carry no error)."""
        return super().error(X, self._masked(T, mask), **options)

    # -- copying and pickling -----------------------------------------------------------------

    def __getstate__(self):
        return {**super().__getstate__(), "recurrent": dict(self.recurrent)}

    def __setstate__(self, state):
        self.recurrent = _spec(**state["recurrent"])
        expected = unrolled_topology(**self.recurrent)
        super().__setstate__(state)
        if self.topology != expected:
            raise ValueError("a recurrent network's topology must be the unrolled net of its "
                             "recurrent description")
        self._mark_recurrent()

    def __repr__(self):
        r = self.recurrent
        return (f"RecurrentNetwork({r['n_inputs']}-{r['n_hidden']}-{r['n_outputs']}, "
                f"n_steps={r['n_steps']}, output_feedback={r['output_feedback']}, "
                f"dtype={self.dtype.name}, seed={self.seed})")
