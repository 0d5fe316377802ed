"""Training schedules: phases of sweeps with their own learning rate, momentum and decay."""

from __future__ import annotations

from dataclasses import dataclass

from ._validation import INT64_MAX, check_int, check_real


@dataclass(frozen=True)
class Phase:
    """`n_sweeps` sweeps at learning rate `lr` (epsilon), `momentum` (alpha) and `weight_decay`.

    The velocity carries over from one phase to the next, as in the paper's family-trees run:
    ``[Phase(20, lr=0.005, momentum=0.5), Phase(1480, lr=0.01, momentum=0.9)]``.
    """

    n_sweeps: int
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self):
        check_int("Phase.n_sweeps", self.n_sweeps, low=0, high=INT64_MAX)
        check_real("Phase.lr", self.lr, low=0, low_open=True)
        check_real("Phase.momentum", self.momentum, low=0, high=1, high_open=True)
        check_real("Phase.weight_decay", self.weight_decay, low=0, high=1, high_open=True)
