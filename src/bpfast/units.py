"""The unit functions and losses: the one place in Python that names them, with the float64
NumPy math that :mod:`bpfast.reference` checks the compiled core against.

The C core lists the same names in the same order (``BP_ACTIVATIONS`` and ``BP_LOSSES`` in
csrc/bpfast.h, their vector math in csrc/units.inc.c); a test compares the two lists, so adding a
unit or a loss is one entry here and one there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

LEAKY_SLOPE = 0.01  # leaky_relu's slope below zero (BP_LEAKY_SLOPE)


@dataclass(frozen=True)
class Activation:
    """A unit's output function.

    f : total inputs (n_cases, n_units) -> outputs, float64.
    derivative : outputs -> dy/dx, unit by unit; None for softmax, whose dE/dx the cross-entropy
        loss gives directly (softmax is allowed on output layers with that loss only).
    output_range : the closed interval an output unit's values lie in; None: unbounded.
    hidden : whether a layer below the output may use it.
    """

    name: str
    f: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray] | None
    output_range: tuple[float, float] | None
    hidden: bool = True


def _logistic(x):
    with np.errstate(over="ignore"):  # exp(-x) = inf for x < -709, and 1/(1+inf) = 0 exactly
        return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# In the C enum's order: a unit's number is its position here.
ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (
    Activation("logistic", _logistic, lambda y: y * (1.0 - y), (0.0, 1.0)),
    Activation("tanh", np.tanh, lambda y: 1.0 - y * y, (-1.0, 1.0)),
    Activation("identity", lambda x: x, np.ones_like, None),
    Activation("relu", lambda x: np.where(x < 0, 0.0, x), lambda y: (y > 0).astype(float), None),
    Activation("leaky_relu", lambda x: np.where(x < 0, LEAKY_SLOPE * x, x),
               lambda y: np.where(y > 0, 1.0, LEAKY_SLOPE), None),
    Activation("softmax", _softmax, None, (0.0, 1.0), hidden=False),
)}
ACTIVATION_NUMBERS = {name: i for i, name in enumerate(ACTIVATIONS)}


@dataclass(frozen=True)
class Loss:
    """An output loss. terms(y, T, activation, dead_zone) -> (each output's share of E before
    case weights, dE/dx at the outputs before case weights and reduction)."""

    name: str
    terms: Callable[..., tuple[np.ndarray, np.ndarray]]
    outputs: tuple[str, ...] | None  # the output activations it may follow (None: any but softmax)


def _squared(y, T, activation, dead_zone, zone=False):
    e = y - T
    if zone:
        off, on = dead_zone
        e = np.where(((T >= 0.5) & (y > on)) | ((T < 0.5) & (y < off)), 0.0, e)
    return 0.5 * e * e, e * ACTIVATIONS[activation].derivative(y)


def _cross_entropy(y, T, activation, dead_zone):
    eps = np.finfo(np.float64).eps  # the core clips by its own dtype's epsilon
    yc = np.clip(y, eps, 1 - eps)
    terms = -T * np.log(yc)
    if activation != "softmax":
        terms -= (1 - T) * np.log(1 - yc)
    return terms, y - T


LOSSES: dict[str, Loss] = {loss.name: loss for loss in (
    Loss("sse", _squared, None),
    Loss("dead_zone", lambda y, T, a, z: _squared(y, T, a, z, zone=True), None),
    Loss("cross_entropy", _cross_entropy, ("logistic", "softmax")),
)}

REDUCTIONS = ("sum", "mean")


def check_pairing(activation: str, loss: str) -> None:
    """ValueError unless an output layer of `activation` can be trained with `loss`."""
    allowed = LOSSES[loss].outputs
    if allowed is not None and activation not in allowed:
        raise ValueError(f"loss={loss!r} needs output units that are one of {list(allowed)}, "
                         f"but the output layer is {activation}")
    if allowed is None and ACTIVATIONS[activation].derivative is None:
        raise ValueError(f"{activation} outputs are trained with loss='cross_entropy' only "
                         f"(got loss={loss!r})")
