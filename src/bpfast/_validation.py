"""Checks at the public API: every bad argument becomes a ValueError or TypeError that names it
and says how to fix the call, before anything reaches compiled code."""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

# Thread counts beyond this are certainly a mistake (and would make OpenMP allocate stacks for
# each); machines with more cores than this are not a target.
MAX_THREADS = 1024


def check_real(name: str, value, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """A finite real number within [low, high] (or open ends); returns it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def check_int(name: str, value, *, low=None, high=None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def resolve_n_threads(n_threads) -> int:
    """None means every core this process may use, or OMP_NUM_THREADS when that is set."""
    if n_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
        if env.isdigit() and int(env) >= 1:
            return min(int(env), MAX_THREADS)
        try:
            return max(1, min(len(os.sched_getaffinity(0)), MAX_THREADS))
        except AttributeError:  # not on Linux
            return max(1, min(os.cpu_count() or 1, MAX_THREADS))
    return check_int("n_threads", n_threads, low=1, high=MAX_THREADS)


def as_matrix(name: str, value, dtype, n_cols: int, what_cols: str) -> np.ndarray:
    """`value` as a C-contiguous (n, n_cols) array of `dtype`, copied only when needed.

    Accepts lists, any memory layout, read-only and memory-mapped arrays and any real dtype;
    a 1-D array is taken as one column when n_cols == 1. Rejects non-real dtypes, wrong shapes,
    empty arrays and values that are not finite in `dtype`.
    """
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as a 2-D array of numbers: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int or float), got dtype "
                        f"{array.dtype}; convert it with np.asarray({name}, dtype=float)")
    if array.ndim == 1 and n_cols == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D, (n_samples, {n_cols}) {what_cols}, got shape "
                         f"{array.shape}" + ("; for one case use x.reshape(1, -1)"
                                             if array.ndim == 1 else ""))
    if array.shape[0] == 0:
        raise ValueError(f"{name} has no rows; pass at least one case")
    if array.shape[1] != n_cols:
        raise ValueError(f"{name} has {array.shape[1]} columns but the network has {n_cols} "
                         f"{what_cols}")
    with np.errstate(over="ignore", invalid="ignore"):  # reported below, as a clear error
        converted = np.ascontiguousarray(array, dtype=dtype)
    if not np.isfinite(converted).all():
        bad = np.argwhere(~np.isfinite(converted))[0]
        raise ValueError(f"{name} contains a value that is NaN or infinite in {np.dtype(dtype).name} "
                         f"(first at row {bad[0]}, column {bad[1]}: "
                         f"{array[bad[0], bad[1]]!r}); remove or replace such values")
    return converted


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where it cannot be told."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(n_bytes: int, what: str) -> None:
    """MemoryError, before allocating, for buffers larger than the machine's RAM (with overcommit
    such an allocation may 'succeed' and the process be killed later when the pages are touched)."""
    total = physical_memory()
    if total is not None and n_bytes > total:
        raise MemoryError(f"{what} would need {n_bytes / 2**30:,.1f} GiB but this machine has "
                          f"{total / 2**30:,.1f} GiB of memory; use smaller layers or batches")
