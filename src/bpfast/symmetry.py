"""The symmetry experiment of Nature Fig. 1: a 6-2-1 net learns to detect mirror palindromes.

`run` trains it with the paper's settings and `describe_solution` reads the learned weights the way
the paper does: mirror-position weights equal and opposite, magnitudes in ratios near 1 : 2 : 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import datasets
from .experiments import EXPERIMENTS
from .network import Network

# The paper's figures (Rumelhart, Hinton & Williams 1986, Fig. 1); its settings are the
# "symmetry" preset in bpfast.experiments.
PAPER_SWEEPS = 1425
PAPER_HIDDEN_WEIGHTS = (14.2, -3.6, 7.2, -7.2, 3.6, -14.2)
PAPER_HIDDEN_BIAS, PAPER_HIDDEN_TO_OUTPUT, PAPER_OUTPUT_BIAS = -1.1, -8.8, 6.4


@dataclass(frozen=True)
class Solution:
    """What the learned 6-2-1 weights look like, in the paper's terms."""

    hidden_weights: np.ndarray      # (2, 6)
    hidden_bias: np.ndarray         # (2,)
    output_weights: np.ndarray      # (2,)
    output_bias: float
    antisymmetry: float             # max |w_i + w_(7-i)| / max |w|: 0 for exactly opposite mirrors
    magnitude_ratios: np.ndarray    # (2, 3) sorted |w| of one side over the smallest: paper ≈ 1:2:4


def run(seed: int = 0, dtype: str = "float32", n_threads: int | None = None):
    """Train the 6-2-1 net on all 64 patterns with the paper's settings (eps 0.1, alpha 0.9,
    U(±0.3)) until every output is within 0.2 of its target, or for 20,000 sweeps.
    Returns (network, FitResult)."""
    outcome = EXPERIMENTS["symmetry"].run(seed=seed, dtype=dtype, n_threads=n_threads)
    return outcome.network, outcome.result


MAX_SWEEPS = EXPERIMENTS["symmetry"].n_sweeps


def check_symmetry_net(net: Network, what: str) -> None:
    """ValueError unless `net` is the paper's symmetry net: 6 inputs, 2 hidden units, 1 output
    fed by them alone, with biases (what `what` reads)."""
    topo = net.topology
    if (topo.names != ("input", "hidden1", "output") or list(topo.size) != [6, 2, 1] or
            topo.layers[-1].sources != ("hidden1",)):
        raise ValueError(f"{what} reads the paper's symmetry net, Network([6, 2, 1]); got "
                         f"{net!r}")
    for layer in ("hidden1", "output"):
        if net.bias(layer) is None:
            raise ValueError(f"{what} needs the symmetry net's biases; {layer} has none")


def _bias(net: Network, layer: str) -> np.ndarray:
    """A bias vector of the symmetry net (check_symmetry_net has seen that it has one)."""
    return np.asarray(net.bias(layer), dtype=np.float64)


def describe_solution(net: Network) -> Solution:
    check_symmetry_net(net, "describe_solution")
    W = net.weights("hidden1", "input").astype(np.float64)
    mirror_sum = np.abs(W + W[:, ::-1]).max()
    halves = np.sort(np.abs(W[:, :3]), axis=1)
    return Solution(
        hidden_weights=W,
        hidden_bias=_bias(net, "hidden1"),
        output_weights=net.weights("output", "hidden1")[0].astype(np.float64),
        output_bias=float(_bias(net, "output")[0]),
        antisymmetry=float(mirror_sum / np.abs(W).max()),
        magnitude_ratios=halves / halves[:, :1],
    )


def has_paper_magnitudes(net: Network, tolerance: float = 0.15) -> bool:
    """Whether both hidden units' weight magnitudes are in the paper's ratios 1 : 2 : 4, each
    within `tolerance` of its value (backprop's usual answer; about a fifth of solved nets find
    another antisymmetric solution, near 1 : 1.55 : 2.07)."""
    ratios = describe_solution(net).magnitude_ratios
    target = np.array([1.0, 2.0, 4.0])
    return bool(np.all(np.abs(ratios - target) <= tolerance * target))


def right_side_of_half(net: Network) -> bool:
    """The paper's weaker criterion: every output on the right side of 0.5."""
    X, T = datasets.symmetry()
    return bool(np.all((net.predict(X) > 0.5) == (T > 0.5)))
