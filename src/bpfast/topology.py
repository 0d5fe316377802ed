"""The shape of a network: a layered DAG of named input groups and computed layers.

A :class:`Topology` turns a list of :class:`Layer` specs into the flat integer tables the compiled
core and :mod:`bpfast.reference` both read: sizes, activations, the edges (which lower layer feeds
which layer) and where every weight block and bias vector lives in the flat parameter arena.
The arena holds every weight block first, in layer then source order, and every bias after them,
so that "decay the weights but not the biases" is one contiguous range.
"""

from __future__ import annotations

import numbers
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ._validation import check_bool
from .units import ACTIVATION_NUMBERS, ACTIVATIONS

# The C kernels index units with `int`; larger layers could not be addressed.
MAX_LAYER_SIZE = 2**31 - 1


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
    """

    def __init__(self, inputs: Mapping[str, int], layers: Sequence[Layer]):
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
        self.n_weights = offset
        bias_offset = [-1] * self.n_layers
        for l, layer in enumerate(layers, start=self.n_inputs):
            if layer.bias:
                bias_offset[l] = offset
                offset += sizes[l]
        self.n_params = offset

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
        for table in (self.size, self.activation, self.bias_offset, self.input_col,
                      self.src_start, self.src_layer, self.w_offset, self.accumulate):
            table.flags.writeable = False  # compiled code trusts these tables
        self._compiled = None  # the C view of these tables, made by bpfast._core on first use

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
        """(offset, shape) of the weights from `source` into `layer` in the arena."""
        e = self.edge(layer, source)
        l = self._layer_index(layer)
        return int(self.w_offset[e]), (int(self.size[l]), int(self.size[self.src_layer[e]]))

    def bias_block(self, layer: str) -> tuple[int, int] | None:
        """(offset, length) of `layer`'s bias in the arena, or None if it has none."""
        l = self._layer_index(layer)
        off = int(self.bias_offset[l])
        return None if off < 0 else (off, int(self.size[l]))

    def describe(self) -> dict:
        """A JSON-friendly description from which an equal Topology can be rebuilt."""
        return {
            "inputs": {n: int(self.size[i]) for i, n in enumerate(self.input_names)},
            "layers": [{"name": lay.name, "size": int(lay.size), "sources": list(lay.sources),
                        "activation": lay.activation, "bias": bool(lay.bias)}
                       for lay in self.layers],
        }

    def __getstate__(self):
        return self.describe()

    def __setstate__(self, state):
        self.__init__(state["inputs"], [Layer(**d) for d in state["layers"]])

    def __eq__(self, other):
        return isinstance(other, Topology) and self.describe() == other.describe()

    def __repr__(self):
        parts = [f"{n}({self.size[i]})" for i, n in enumerate(self.input_names)]
        for lay in self.layers:
            parts.append(f"{lay.name}({lay.size}, {lay.activation}) <- {'+'.join(lay.sources)}")
        return "Topology(" + "; ".join(parts) + ")"
