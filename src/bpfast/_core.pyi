"""Types of the compiled module built from _core.pyx (mypy reads this; Python never imports it)."""

from typing import Any, Callable, Sequence

import numpy as np

LOSSES: dict[str, int]
RULES: dict[str, int]
ACTIVATION_NAMES: tuple[str, ...]
LOSS_NAMES: tuple[str, ...]
PHASE_DEFAULTS: tuple[str, float, float, float]
STATUS_NAMES: dict[int, str]
interrupt_hook: Callable[[str], None] | None
FORWARD_CHUNK_ROWS: int
MAX_CHUNK_SWEEPS: int
MIN_BATCHES_TO_CUT: int
MIN_MEASURED_SECONDS: float
SNAPSHOT_SECONDS: float
SMALL_NETS: bool
ISA_NAMES: tuple[str, ...]
ALL_FEATURES: int

Phases = Sequence[tuple[Any, ...]]  # (n_sweeps, lr, momentum, weight_decay, n_decayed[, ...])

class TrainingGuard:
    def __enter__(self) -> TrainingGuard: ...
    def __exit__(self, *exc_info: Any) -> bool: ...

class InterruptWatch:
    def __enter__(self) -> InterruptWatch: ...
    def __exit__(self, *exc_info: Any) -> bool: ...
    def interrupted(self) -> bool: ...

def workspace_rows(batch_size: int, n_samples: int, evaluates: bool = ...) -> int: ...
def forked_after_parallel() -> bool: ...
def openmp_max_threads() -> int: ...
def try_threads(wanted: int) -> int: ...
def monotonic_seconds() -> float: ...
def workspace_bytes(topology: Any, dtype: Any, max_rows: int, n_samples: int,
                    features: int) -> int: ...
def forward(topology: Any, params: np.ndarray, X: np.ndarray, *, all_layers: bool = ...,
            n_threads: int = ...) -> Any: ...
def loss_gradient(topology: Any, params: np.ndarray, X: np.ndarray, T: np.ndarray, *,
                  loss: str = ..., dead_zone: tuple[float, float] = ..., reduction: str = ...,
                  sample_weight: np.ndarray | None = ..., dropout: float = ...,
                  dropout_key: int = ..., n_threads: int = ...) -> tuple[float, np.ndarray]: ...
def evaluate(topology: Any, params: np.ndarray, X: np.ndarray, T: np.ndarray, *, loss: str = ...,
             dead_zone: tuple[float, float] = ..., stop_tol: float | None = ...,
             sample_weight: np.ndarray | None = ..., n_threads: int = ...) -> tuple[float, bool]: ...
def update(params: np.ndarray, state: np.ndarray, grad: np.ndarray, *, lr: float,
           momentum: float, weight_decay: float = ..., n_decayed: int = ..., rule: str = ...,
           beta2: float = ..., epsilon: float = ..., clip_norm: float = ...,
           n_threads: int = ...) -> bool: ...
def train(topology: Any, params: np.ndarray, velocity: np.ndarray, X: np.ndarray,
          T: np.ndarray, phases: Phases, *, batch_size: int, shuffle: bool = ..., loss: str = ...,
          dead_zone: tuple[float, float] = ..., reduction: str = ...,
          sample_weight: np.ndarray | None = ..., dropout: float = ...,
          stop_tol: float | None = ..., rng_state: Any = ...,
          callback: Callable[[int, float], Any] | None = ..., callback_every: int = ...,
          n_threads: int = ...) -> tuple[np.ndarray, int, str, float, bool, int]: ...
def run_training(topology: Any, params: np.ndarray, velocity: np.ndarray, X: np.ndarray,
                 T: np.ndarray, phases: Phases, *, batch_size: int, shuffle: bool = ...,
                 loss: str = ..., dead_zone: tuple[float, float] = ..., reduction: str = ...,
                 sample_weight: np.ndarray | None = ..., dropout: float = ...,
                 stop_tol: float | None = ..., rng_state: Any = ...,
                 callback: Callable[[int, float], Any] | None = ..., callback_every: int = ...,
                 n_threads: int = ..., chooser: Any = ..., guard: TrainingGuard | None = ...,
                 memory_check: Callable[[int, str], None] | None = ...,
                 evaluate: bool = ..., watch: InterruptWatch | None = ...
                 ) -> tuple[np.ndarray, int, str, float, bool, int]: ...
def population_train(topology: Any, params: np.ndarray, velocity: np.ndarray, back: np.ndarray,
                     X: np.ndarray, T: np.ndarray, *, n_samples: int, shared_x: bool,
                     shared_t: bool, lr: np.ndarray, momentum: np.ndarray,
                     weight_decay: np.ndarray, stop_tol: np.ndarray, n_sweeps: np.ndarray,
                     n_decayed: int, status: np.ndarray, n_done: np.ndarray,
                     errors: np.ndarray | None = ..., final_error: np.ndarray | None = ...,
                     within: np.ndarray | None = ..., loss: str = ...,
                     dead_zone: tuple[float, float] = ..., reduction: str = ...,
                     weighted: bool = ..., n_threads: int = ...,
                     order: np.ndarray | None = ...) -> bool: ...
def build_facts() -> dict[str, Any]: ...
def available_isas() -> list[str]: ...
def set_isa(name: str) -> None: ...
def unit_function(x: np.ndarray, name: str) -> np.ndarray: ...
def population_lanes(topology: Any, dtype: Any, n_samples: int, weighted: bool) -> bool: ...
def small_net(topology: Any, dtype: Any) -> bool: ...
