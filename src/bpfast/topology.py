"""The shape of a network: a layered DAG of named input groups and computed layers.

A :class:`Topology` turns a list of :class:`Layer` specs into the flat integer tables the compiled
core and :mod:`bpfast.reference` both read: sizes, activations, the edges (which lower layer feeds
which layer) and where every weight block and bias vector lives in the flat parameter arena.
The arena holds every weight block first, in layer then source order, and every bias after them,
so that "decay the weights but not the biases" is one contiguous range.

Weight sharing (:class:`Tie`). The layers always compute on the *dense arena*: every block whole,
laid out as above (``w_offset``, ``bias_offset``, ``n_dense`` values). Without ties the parameters
are that arena. With ties, several blocks (or single connections of blocks) read one parameter:
the parameters (``n_params``, still weights first, then biases) are fewer, and ``dense_param[k]``
names the parameter that dense slot k holds (-1: an absent connection, always 0). A parameter's
gradient is the sum of its slots' gradients (or their mean, ``Tie(gradient="mean")``, the paper's
rule for recurrent nets), so momentum and decay change it once.
"""

from __future__ import annotations

import numbers
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ._validation import INT64_MAX, check_bool, check_real
from .units import ACTIVATION_NUMBERS, ACTIVATIONS

# The C kernels index units with `int`; larger layers could not be addressed.
MAX_LAYER_SIZE = 2**31 - 1
# Parameters per chunk of a shared net's gradient sum (one thread each, see Topology).
SHARE_CHUNK = 1024


@dataclass(frozen=True)
class Layer:
    """A computed layer.

    Parameters
    ----------
    name : str
        Unique name, used to refer to the layer as a source and to its weights.
    size : int
        Number of units.
    sources : str or iterable of str
        Names of the input groups or earlier layers that feed this one, each through its own
        dense weight block. Listing a layer below the previous one gives a skip connection.
    activation : {"logistic", "tanh", "identity", "relu", "leaky_relu", "softmax"}
        The unit's output function; "logistic" is the paper's ``1 / (1 + exp(-x))``. "softmax"
        (outputs only, with ``loss="cross_entropy"``) normalises the layer to a distribution.
    bias : bool
        Whether the layer has a learned bias (a weight from a unit that is always 1).

    Every field is checked here, so a bad spec raises TypeError or ValueError on the line that
    builds the Layer, naming the layer and the field.
    """

    name: str
    size: int
    sources: Sequence[str]
    activation: str = "logistic"
    bias: bool = True

    def __post_init__(self):
        name = _check_name("a layer name", self.name)
        object.__setattr__(self, "size", _check_size(f"the size of layer {name!r}", self.size))
        object.__setattr__(self, "sources", _check_sources(name, self.sources))
        if not isinstance(self.activation, str):
            raise TypeError(f"layer {name!r}: activation must be one of {sorted(ACTIVATIONS)}, "
                            f"got {self.activation!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"layer {name!r}: unknown activation {self.activation!r}; "
                             f"choose one of {sorted(ACTIVATIONS)}")
        object.__setattr__(self, "bias", check_bool(f"layer {name!r}: bias", self.bias))


@dataclass(frozen=True, eq=False)
class Tie:
    """One set of shared parameters and the connections that use it.

    Parameters
    ----------
    weights : sequence of (layer, source) pairs
        The weight blocks that share the parameters (give `weights` or `biases`, not both).
    biases : sequence of layer names
        ... or the bias vectors that share them.
    index : None, array of int, or a sequence of arrays of int, one per block
        None: the blocks have one shape and share one whole matrix (or vector), element by
        element. An array shaped like a block: connection ``[j, i]`` of every block uses shared
        parameter ``index[j, i]``, and -1 leaves it out (absent, always 0); the shared
        parameters are ``0 .. index.max()``, each used somewhere. A sequence: block k's own map,
        for blocks of different shapes.
    gradient : {"sum", "mean"} or float
        A shared parameter's gradient is the sum of its connections' gradients (default), or
        their mean, as the paper words its rule for recurrent nets ("changed by the average");
        the two differ by a constant factor per parameter that the learning rate absorbs when
        every parameter has as many copies. A positive number: the sum times that factor.

    Example: one 3x3 receptive field shared by every hidden unit (the PDP chapter's T-C net)
    is ``Tie(weights=[("hidden", "retina")], index=fields)`` with ``fields[j]`` the retina
    cells of unit j's window numbered 0..8 and -1 elsewhere.
    """

    weights: Sequence = ()
    biases: Sequence = ()
    index: Any = None
    gradient: Any = "sum"

    def __post_init__(self):
        if isinstance(self.weights, (str, bytes)) or isinstance(self.biases, (str, bytes)):
            raise TypeError("Tie(weights=...) takes a list of (layer, source) pairs and "
                            "Tie(biases=...) a list of layer names")
        try:
            weights = tuple(tuple(pair) for pair in self.weights)
            biases = tuple(self.biases)
        except TypeError:
            raise TypeError(f"Tie(weights=...) takes a list of (layer, source) pairs and "
                            f"Tie(biases=...) a list of layer names, got {self.weights!r} and "
                            f"{self.biases!r}") from None
        if bool(weights) == bool(biases):
            raise ValueError("a Tie shares either weight blocks (weights=[(layer, source), ...]) "
                             "or bias vectors (biases=[layer, ...]); give exactly one of them")
        for pair in weights:
            if len(pair) != 2 or not all(isinstance(n, str) for n in pair):
                raise TypeError(f"Tie weights must be (layer, source) pairs of names, got {pair!r}")
        if not all(isinstance(n, str) for n in biases):
            raise TypeError(f"Tie biases must be layer names, got {list(biases)!r}")
        uses = weights or biases
        if len(set(uses)) != len(uses):
            raise ValueError(f"a Tie lists a block twice: {list(uses)}")
        if isinstance(self.gradient, str):
            if self.gradient not in ("sum", "mean"):
                raise ValueError(f"Tie gradient must be 'sum', 'mean' or a factor, got "
                                 f"{self.gradient!r}")
        else:
            object.__setattr__(self, "gradient", check_real("Tie gradient", self.gradient,
                                                            low=0, low_open=True))
        index = self.index
        if index is not None:
            ndim = 2 if weights else 1
            if not isinstance(index, np.ndarray):  # nested lists of ints: one map, as an array
                try:
                    one_map = np.asarray(index)
                except (ValueError, TypeError):  # ragged: one map per block
                    one_map = None
                if one_map is not None and one_map.ndim == ndim and one_map.dtype.kind in "iu":
                    index = one_map
            if isinstance(index, np.ndarray) and index.ndim == ndim:
                index = (index,) * len(uses)
            else:
                try:
                    index = tuple(index)
                except TypeError:
                    raise TypeError(f"Tie index must be an array of ints or a list of them, one "
                                    f"per block, got {self.index!r}") from None
                if len(index) != len(uses):
                    raise ValueError(f"a Tie of {len(uses)} blocks needs one index array (for "
                                     f"all) or {len(uses)}, got {len(index)}")
            maps = []
            for k, m in enumerate(index):
                m = np.asarray(m)
                if m.dtype.kind not in "iu" or m.ndim != ndim:
                    raise TypeError(f"Tie index arrays must be {ndim}-D arrays of integers (one "
                                    f"per block), got dtype {m.dtype} with {m.ndim} dimensions")
                if m.size and m.min() < -1:
                    raise ValueError("Tie index values must be -1 (absent) or a shared "
                                     "parameter's number >= 0")
                m = np.array(m, dtype=np.int64)
                m.flags.writeable = False
                maps.append(m)
            if max((int(m.max()) if m.size else -1) for m in maps) < 0:
                raise ValueError("a Tie index must use at least one shared parameter")
            index = tuple(maps)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "biases", biases)
        object.__setattr__(self, "index", index)

    def describe(self) -> dict:
        return {"weights": [list(p) for p in self.weights], "biases": list(self.biases),
                "index": None if self.index is None else [m.tolist() for m in self.index],
                "gradient": self.gradient}

    def __eq__(self, other):
        return isinstance(other, Tie) and self.describe() == other.describe()

    def __repr__(self):
        what = f"weights={list(self.weights)}" if self.weights else f"biases={list(self.biases)}"
        index = "" if self.index is None else ", index=<maps>"
        return f"Tie({what}{index}, gradient={self.gradient!r})"


def _check_sources(layer: str, sources) -> tuple:
    if isinstance(sources, str):
        return (sources,)
    try:
        sources = tuple(sources)
    except TypeError:
        raise TypeError(f"layer {layer!r}: sources must be a name or a list of names of input "
                        f"groups or earlier layers, got {sources!r}") from None
    for source in sources:
        if not isinstance(source, str):
            raise TypeError(f"layer {layer!r}: sources must be names (strings), got {source!r}")
    if len(sources) == 0:
        raise ValueError(f"layer {layer!r} has no sources; list the input groups or earlier "
                         "layers that feed it")
    if len(set(sources)) != len(sources):
        raise ValueError(f"layer {layer!r} lists a source twice: {sources}")
    return sources


def _check_size(what: str, size) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f"{what} must be a positive integer, got {size!r}")
    size = int(size)
    if not 1 <= size <= MAX_LAYER_SIZE:
        raise ValueError(f"{what} must be between 1 and {MAX_LAYER_SIZE}, got {size}")
    return size


def _check_name(what: str, name) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} must be a non-empty string, got {name!r}")
    return name


class Topology:
    """Flat tables describing a layered DAG; built once per network and never changed.

    Attributes (NumPy arrays, C-contiguous)
    ----------
    size, activation : int32 (n_layers,)
    bias_offset : int64 (n_layers,)     -1 where a layer has no bias (and for input groups)
    input_col : int32 (n_inputs,)       first column of each input group in X
    src_start : int32 (n_layers + 1,)   edges of layer l are src_start[l] .. src_start[l+1]-1
    src_layer : int32 (n_edges,)
    w_offset : int64 (n_edges,)         the (size[l], size[src]) block starts here in the arena
    accumulate : int32 (n_edges,)       1 if a higher layer also feeds on this edge's source
    n_dense, n_params, n_weights : int  the dense arena's length; the parameters, and how many of
                                        them are weights (the first ones; the rest are biases)
    shared : bool                       whether any Tie makes the parameters differ from the arena
    dense_param : int64 (n_dense,)      the parameter each dense slot holds, -1: absent (if shared)
    share_runs : int64 (n_runs, 3)      the same as runs (dense slot, parameter, length) of slots
                                        holding consecutive parameters, in slot order (if shared)
    share_chunk_start, share_chunk_runs : int64
                                        for each chunk of SHARE_CHUNK parameters, the runs that
                                        fill some of them: share_chunk_runs[share_chunk_start[c]:
                                        share_chunk_start[c + 1]], in slot order (if shared)
    share_scale : float64 (n_params,)   each parameter's gradient is this times its slots' sum, or
                                        None if every factor is 1 (no Tie with gradient="mean")
    row_start, row_end : int32 (n_edges,)  the rows of each block that hold present connections
                                        (the layers skip the rest), or None if all do
    recurrence : bpfast.recurrent.Recurrence or None
                                        set by RecurrentNetwork on its unrolled net, so that
                                        training runs it as a recurrent net (csrc/recurrent.inc.c)
    """

    # None unless shared (the tables of weight sharing)
    dense_param: Any
    share_runs: Any
    share_chunk_start: Any
    share_chunk_runs: Any
    share_scale: Any
    row_start: Any
    row_end: Any
    recurrence: Any  # a bpfast.recurrent.Recurrence, or None

    def __init__(self, inputs: Mapping[str, int], layers: Sequence[Layer], ties: Sequence = ()):
        if not isinstance(inputs, Mapping) or len(inputs) == 0:
            raise ValueError("inputs must be a non-empty mapping of input group name -> size, "
                             "e.g. {'person': 24, 'relation': 12}")
        try:
            layers = list(layers)
        except TypeError:
            raise TypeError(f"layers must be a list of bpfast.Layer objects, "
                            f"got {layers!r}") from None
        if len(layers) == 0:
            raise ValueError("a network needs at least one computed layer (its output layer)")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"layers must be bpfast.Layer objects, got {layer!r}")

        self.input_names = tuple(_check_name("an input group name", n) for n in inputs)
        self.layers = tuple(layers)
        self.names = self.input_names + tuple(lay.name for lay in layers)
        duplicated = [n for n, count in Counter(self.names).items() if count > 1]
        if duplicated:
            raise ValueError(f"names must be unique; repeated: {sorted(duplicated)}")
        self.index = {name: i for i, name in enumerate(self.names)}
        self.n_inputs = len(self.input_names)
        self.n_layers = len(self.names)

        sizes = [_check_size(f"the size of input group {n!r}", inputs[n]) for n in self.input_names]
        for layer in layers[:-1]:
            if not ACTIVATIONS[layer.activation].hidden:
                raise ValueError(f"layer {layer.name!r}: {layer.activation} is for output layers "
                                 f"only (the last layer)")
        if layers[-1].activation == "softmax" and layers[-1].size == 1:
            raise ValueError(f"layer {layers[-1].name!r}: a softmax over one unit is always 1; "
                             f"use activation='logistic' for one output")
        activations = [ACTIVATION_NUMBERS["identity"]] * self.n_inputs
        src_start, src_layer = [0] * (self.n_inputs + 1), []
        for i, layer in enumerate(layers):
            sizes.append(layer.size)
            activations.append(ACTIVATION_NUMBERS[layer.activation])
            for src in layer.sources:
                j = self.index.get(src)
                if j is None or j >= self.n_inputs + i:
                    raise ValueError(
                        f"layer {layer.name!r}: source {src!r} is not an input group or an earlier "
                        f"layer; layers must be listed bottom-up (known so far: "
                        f"{list(self.names[:self.n_inputs + i])})")
                src_layer.append(j)
            src_start.append(len(src_layer))

        # Layers are visited bottom-up, so the last layer to claim a source is its highest consumer.
        highest_consumer = [-1] * self.n_layers
        for l in range(self.n_inputs, self.n_layers):
            for e in range(src_start[l], src_start[l + 1]):
                highest_consumer[src_layer[e]] = l
        unused = [self.names[l] for l in range(self.n_layers - 1) if highest_consumer[l] < 0]
        if unused:
            raise ValueError(f"{unused} feed no layer above them; every input group and every layer "
                             "but the last (the output) must be a source of a later layer")

        w_offset, accumulate, offset = [], [], 0
        for l in range(self.n_inputs, self.n_layers):
            for e in range(src_start[l], src_start[l + 1]):
                w_offset.append(offset)
                offset += sizes[l] * sizes[src_layer[e]]
                # The backward pass visits layers top-down, so the highest consumer of a source
                # writes its input gradient first and every lower consumer adds to it.
                accumulate.append(int(highest_consumer[src_layer[e]] > l))
        n_dense_weights = offset
        bias_offset = [-1] * self.n_layers
        for l, layer in enumerate(layers, start=self.n_inputs):
            if layer.bias:
                bias_offset[l] = offset
                offset += sizes[l]
        self.n_dense = offset
        if offset > INT64_MAX // 8:  # past what any memory holds, and what the core's offsets can
            raise MemoryError(f"a network of {offset:,} parameters would need "
                              f"{offset * 4 / 2**30:,.0f} GiB or more; use smaller layers")

        input_col = np.cumsum([0] + sizes[: self.n_inputs])
        self.n_input_cols = int(input_col[-1])
        self.n_outputs = sizes[-1]
        self.size = np.array(sizes, dtype=np.int32)
        self.activation = np.array(activations, dtype=np.int32)
        self.bias_offset = np.array(bias_offset, dtype=np.int64)
        self.input_col = np.array(input_col[:-1], dtype=np.int32)
        self.src_start = np.array(src_start, dtype=np.int32)
        self.src_layer = np.array(src_layer, dtype=np.int32)
        self.w_offset = np.array(w_offset, dtype=np.int64)
        self.accumulate = np.array(accumulate, dtype=np.int32)
        self.ties = self._check_ties(ties)
        self._share(n_dense_weights)
        for table in (self.size, self.activation, self.bias_offset, self.input_col,
                      self.src_start, self.src_layer, self.w_offset, self.accumulate,
                      self.dense_param, self.share_runs, self.share_chunk_start,
                      self.share_chunk_runs, self.share_scale, self.row_start, self.row_end):
            if table is not None:
                table.flags.writeable = False  # compiled code trusts these tables
        self.recurrence = None
        self._compiled = None  # the C view of these tables, made by bpfast._core on first use

    def _check_ties(self, ties) -> tuple:
        if isinstance(ties, Tie):
            ties = [ties]
        try:
            ties = tuple(ties)
        except TypeError:
            raise TypeError(f"ties must be a list of bpfast.Tie, got {ties!r}") from None
        seen: dict = {}
        for tie in ties:
            if not isinstance(tie, Tie):
                raise TypeError(f"ties must be bpfast.Tie objects, got {tie!r}")
            for k, use in enumerate(tie.weights or tie.biases):
                if not tie.weights and self.bias_block(use) is None:
                    raise ValueError(f"Tie biases: layer {use!r} has no bias (bias=False)")
                shape = self._block_shape(tie, use)  # raises for a pair that is not an edge
                if use in seen:
                    raise ValueError(f"{use!r} is in two Ties; a block shares one set of "
                                     f"parameters")
                seen[use] = True
                if tie.index is not None and tie.index[k].shape != shape:
                    raise ValueError(f"Tie index for {use!r} has shape {tie.index[k].shape}, "
                                     f"but the block has shape {shape}")
            if tie.index is None:
                shapes = {self._block_shape(tie, use) for use in tie.weights or tie.biases}
                if len(shapes) > 1:
                    raise ValueError(f"the blocks of a Tie without an index must have one shape, "
                                     f"got {sorted(shapes)} for {list(tie.weights or tie.biases)}")
            else:
                n_shared = max(int(m.max()) for m in tie.index) + 1
                n_slots = sum(int(m.size) for m in tie.index)
                if n_shared > n_slots:  # before sizing anything by a hostile index
                    raise ValueError(f"a Tie's index names shared parameter {n_shared - 1} but "
                                     f"its blocks have only {n_slots} connections: every shared "
                                     f"parameter must be used")
                used = np.zeros(n_shared, dtype=bool)
                for m in tie.index:
                    used[m[m >= 0]] = True
                if not used.all():
                    raise ValueError(f"a Tie's shared parameters must each be used: its index "
                                     f"never uses {np.flatnonzero(~used)[:10].tolist()}")
        return ties

    def _block_shape(self, tie: Tie, use) -> tuple:
        if tie.weights:
            return self.weight_block(*use)[1]
        block = self.bias_block(use)
        return () if block is None else (block[1],)

    def _share(self, n_dense_weights: int) -> None:
        """The parameters and the sharing tables (see the class docstring) from the ties."""
        self.shared = bool(self.ties)
        if not self.shared:
            self.n_params, self.n_weights = self.n_dense, n_dense_weights
            self.dense_param = self.share_runs = self.share_scale = None
            self.share_chunk_start = self.share_chunk_runs = None
            self.row_start = self.row_end = None
            return
        self.dense_param, factor = self._layout_parameters()
        slots = np.flatnonzero(self.dense_param >= 0)
        params = self.dense_param[slots]
        self._runs(slots, params)
        counts = np.bincount(params, minlength=self.n_params)
        factor = np.where(factor == 0, 1.0 / counts, factor)
        self.share_scale = None if (factor == 1).all() else factor
        self._row_ranges()

    def _blocks(self) -> list:
        """(dense offset, shape, name) of every weight block, then of every bias, in arena
        order; a block's name is (layer, source), a bias's its layer."""
        blocks: list = []
        for l in range(self.n_inputs, self.n_layers):
            for e in range(self.src_start[l], self.src_start[l + 1]):
                blocks.append((int(self.w_offset[e]),
                               (int(self.size[l]), int(self.size[self.src_layer[e]])),
                               (self.names[l], self.names[self.src_layer[e]])))
        for l in range(self.n_inputs, self.n_layers):
            if self.bias_offset[l] >= 0:
                blocks.append((int(self.bias_offset[l]), (int(self.size[l]),), self.names[l]))
        return blocks

    def _layout_parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """Each dense slot's parameter (-1: absent), and each parameter's gradient factor (1:
        sum, 0: mean, or a Tie's number). An untied block keeps parameters of its own; a Tie's
        are placed where its first block (in arena order) is met. Sets n_params, n_weights."""
        tie_of = {use: (t, k) for t, tie in enumerate(self.ties)
                  for k, use in enumerate(tie.weights or tie.biases)}
        dense_param = np.full(self.n_dense, -1, dtype=np.int64)
        factors, base, n = [], {}, 0
        self.n_weights = -1
        for offset, shape, use in self._blocks():
            if not isinstance(use, tuple) and self.n_weights < 0:  # the first bias
                self.n_weights = n
            size = int(np.prod(shape))
            if use not in tie_of:
                dense_param[offset: offset + size] = np.arange(n, n + size)
                factors.append(np.ones(size))
                n += size
                continue
            t, k = tie_of[use]
            tie = self.ties[t]
            if t not in base:
                count = size if tie.index is None else max(int(m.max()) for m in tie.index) + 1
                base[t] = n
                factors.append(np.full(count, {"sum": 1.0, "mean": 0.0}.get(tie.gradient,
                                                                            tie.gradient)))
                n += count
            local = np.arange(size) if tie.index is None else tie.index[k].ravel()
            dense_param[offset: offset + size] = np.where(local >= 0, base[t] + local, -1)
        if self.n_weights < 0:  # no biases
            self.n_weights = n
        self.n_params = n
        return dense_param, np.concatenate(factors)

    def _runs(self, slots: np.ndarray, params: np.ndarray) -> None:
        """share_runs: runs of slots that hold consecutive parameters, which the core copies and
        sums as vectors (a tied block is one run, or one per row of a mapped block); and for each
        chunk of SHARE_CHUNK parameters the runs that reach into it (one thread sums a chunk)."""
        starts = np.flatnonzero(np.concatenate(
            [[True], (np.diff(slots) != 1) | (np.diff(params) != 1)]))
        lengths = np.diff(np.append(starts, len(slots)))
        self.share_chunk = SHARE_CHUNK
        self.share_runs = np.ascontiguousarray(
            np.stack([slots[starts], params[starts], lengths], axis=1), dtype=np.int64)
        first = self.share_runs[:, 1] // SHARE_CHUNK
        last = (self.share_runs[:, 1] + self.share_runs[:, 2] - 1) // SHARE_CHUNK
        chunk_of = np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)])
        run_of = np.repeat(np.arange(len(first)), last - first + 1)
        order = np.argsort(chunk_of, kind="stable")  # within a chunk: slot order
        n_chunks = -(-self.n_params // SHARE_CHUNK)
        self.share_chunk_runs = run_of[order].astype(np.int64)
        self.share_chunk_start = np.searchsorted(chunk_of[order], np.arange(n_chunks + 1)
                                                 ).astype(np.int64)

    def _row_ranges(self) -> None:
        """row_start, row_end: the rows of each weight block that hold a present connection."""
        row_start, row_end = [], []
        for offset, shape, use in self._blocks():
            if not isinstance(use, tuple):
                break  # the biases
            present = np.flatnonzero(
                (self.dense_param[offset: offset + shape[0] * shape[1]] >= 0
                 ).reshape(shape).any(axis=1))
            row_start.append(int(present[0]) if present.size else 0)
            row_end.append(int(present[-1]) + 1 if present.size else 0)
        self.row_start = np.array(row_start, dtype=np.int32)
        self.row_end = np.array(row_end, dtype=np.int32)

    def dense(self, params, dtype=np.float64) -> np.ndarray:
        """The dense arena of `params` in `dtype`: what every block of the layers sees (absent
        connections 0; `params` itself, as `dtype`, when nothing is shared)."""
        params = np.asarray(params, dtype=dtype)
        if not self.shared:
            return params
        return np.where(self.dense_param >= 0, params[np.maximum(self.dense_param, 0)],
                        params.dtype.type(0))

    def gather(self, dense_grad) -> np.ndarray:
        """The parameters' gradient from the dense arena's: each parameter's slots summed (in
        ascending order), times share_scale."""
        dense_grad = np.asarray(dense_grad, dtype=np.float64)
        if not self.shared:
            return dense_grad
        grad = np.zeros(self.n_params)
        present = self.dense_param >= 0
        np.add.at(grad, self.dense_param[present], dense_grad[present])
        return grad if self.share_scale is None else grad * self.share_scale

    @classmethod
    def from_description(cls, description: dict) -> Topology:
        """The Topology that :meth:`describe` described."""
        ties = [Tie(weights=[tuple(p) for p in d["weights"]], biases=d["biases"],
                    index=None if d["index"] is None else [np.array(m, dtype=np.int64)
                                                           for m in d["index"]],
                    gradient=d["gradient"])
                for d in description.get("ties", [])]
        return cls(description["inputs"], [Layer(**d) for d in description["layers"]], ties)

    @classmethod
    def chain(cls, sizes: Sequence[int], activation: str = "logistic",
              output_activation: str | None = None, bias: bool = True) -> "Topology":
        """A plain stack: ``[6, 2, 1]`` is 6 inputs, one hidden layer of 2, 1 output.

        The input group is named ``"input"``, hidden layers ``"hidden1"``, ``"hidden2"``, ... and
        the top layer ``"output"``.
        """
        if isinstance(sizes, (str, bytes)):
            raise TypeError(f"sizes must be a list of layer sizes such as [6, 2, 1], got {sizes!r}")
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(f"sizes must be a list of layer sizes such as [6, 2, 1], "
                            f"got {sizes!r}") from None
        if len(sizes) < 2:
            raise ValueError(f"a chain needs at least an input size and an output size, got {sizes}")
        names = ["input"] + [f"hidden{i}" for i in range(1, len(sizes) - 1)] + ["output"]
        layers = [
            Layer(names[i], sizes[i], [names[i - 1]],
                  activation=(output_activation or activation) if i == len(sizes) - 1 else activation,
                  bias=bias)
            for i in range(1, len(sizes))
        ]
        return cls({"input": sizes[0]}, layers)

    def edge(self, layer: str, source: str) -> int:
        """The index of the weight block from `source` into `layer`."""
        l, s = self._layer_index(layer), self.index.get(source)
        for e in range(self.src_start[l], self.src_start[l + 1]):
            if self.src_layer[e] == s:
                return e
        raise ValueError(f"layer {layer!r} is not fed by {source!r}; its sources are "
                       f"{list(self.layers[l - self.n_inputs].sources)}")

    def _layer_index(self, layer: str) -> int:
        l = self.index.get(layer)
        if l is None or l < self.n_inputs:
            raise ValueError(f"{layer!r} is not a computed layer; layers: "
                           f"{list(self.names[self.n_inputs:])}")
        return l

    def weight_block(self, layer: str, source: str) -> tuple[int, tuple[int, int]]:
        """(offset, shape) of the weights from `source` into `layer` in the dense arena (the
        parameters themselves unless the net is shared)."""
        e = self.edge(layer, source)
        l = self._layer_index(layer)
        return int(self.w_offset[e]), (int(self.size[l]), int(self.size[self.src_layer[e]]))

    def bias_block(self, layer: str) -> tuple[int, int] | None:
        """(offset, length) of `layer`'s bias in the dense arena, or None if it has none."""
        l = self._layer_index(layer)
        off = int(self.bias_offset[l])
        return None if off < 0 else (off, int(self.size[l]))

    def describe(self) -> dict:
        """A JSON-friendly description from which an equal Topology can be rebuilt
        (:meth:`from_description`); "ties" only when there are some."""
        description = {
            "inputs": {n: int(self.size[i]) for i, n in enumerate(self.input_names)},
            "layers": [{"name": lay.name, "size": int(lay.size), "sources": list(lay.sources),
                        "activation": lay.activation, "bias": bool(lay.bias)}
                       for lay in self.layers],
        }
        if self.ties:
            description["ties"] = [tie.describe() for tie in self.ties]
        return description

    def __getstate__(self):
        return self.describe()

    def __setstate__(self, state):
        other = Topology.from_description(state)
        self.__dict__.update(other.__dict__)

    def __eq__(self, other):
        return isinstance(other, Topology) and self.describe() == other.describe()

    def __repr__(self):
        parts = [f"{n}({self.size[i]})" for i, n in enumerate(self.input_names)]
        for lay in self.layers:
            parts.append(f"{lay.name}({lay.size}, {lay.activation}) <- {'+'.join(lay.sources)}")
        if self.ties:
            parts.append(f"{len(self.ties)} ties, {self.n_params} parameters")
        return "Topology(" + "; ".join(parts) + ")"
