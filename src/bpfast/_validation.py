"""Checks at the public API: every bad argument becomes a ValueError or TypeError that names it
and says how to fix the call, before anything reaches compiled code."""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

# The C core counts sweeps, rows and offsets in int64; checked ints stay below this.
INT64_MAX = 2**63 - 1


def check_real(name: str, value, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """A finite real number within [low, high] (or open ends); returns it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond the range of a double
        raise ValueError(f"{name} must be finite, got a number too large for a float") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def check_int(name: str, value, *, low=None, high=None) -> int:
    """An integer within [low, high] (INT64_MAX for what the C core counts in int64)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_bool(name: str, value) -> bool:
    """True or False (NumPy's bools too): a string such as "no" is not silently true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of a float array is finite. A NaN or infinity makes the sum NaN or
    infinite, so a finite sum settles it in one pass without a temporary (np.isfinite(...).all()
    makes a boolean copy of the array; with NumPy 2.4 the two take about the same time, 2.3-2.8 ms
    for 10 million float32 values on Zen 5, and with older NumPy the sum was 4x faster); a sum
    that overflowed is checked value by value."""
    if array.dtype.kind != "f":
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(array, axis=None)):
            return True
    return bool(np.isfinite(array).all())


# float64 values at or beyond this magnitude round to an infinity in float32 (the midpoint
# between float32's largest value and 2**128 rounds to even, up).
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103


def check_finite_state(what: str, **arrays) -> None:
    """ValueError if an array of a network's state to save or pickle holds NaN or infinity: the
    file or pickle could not be read back (loading refuses non-finite values), and a save would
    have replaced a good file with it. Arrays of one row per member name the member."""
    for name, array in arrays.items():
        if all_finite(array):
            continue
        where = np.argwhere(~np.isfinite(array))[0]
        at = f"member {where[0]}, index {where[1]}" if array.ndim == 2 else f"index {where[0]}"
        raise ValueError(f"{what}: {name} holds NaN or infinite values (first at {at}), which "
                         f"could not be read back; set them to finite values first")


class NonFiniteError(ValueError):
    """A value of a matrix that is NaN or infinite in the dtype it is converted to, at (row,
    column): callers that stacked several matrices into one say which one and where."""

    def __init__(self, message: str, row: int, column: int):
        super().__init__(message)
        self.row, self.column = int(row), int(column)


def as_matrix(name: str, value, dtype, n_cols: int, what_cols: str,
              keep_float64: bool = False) -> np.ndarray:
    """`value` as a C-contiguous (n, n_cols) array of `dtype`, copied only when needed.

    Accepts lists, any memory layout, read-only and memory-mapped arrays and any real dtype;
    a 1-D array is taken as one column when n_cols == 1. Rejects non-real dtypes, wrong shapes,
    empty arrays and values that are not finite in `dtype`. keep_float64: for a float32 `dtype`, a
    C-contiguous float64 array is returned as it is (no copy: the training kernels round each
    case as they bind it, to the same numbers as a float32 copy).
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
    if (keep_float64 and np.dtype(dtype) == np.float32 and array.dtype == np.float64
            and array.flags.c_contiguous):
        # (a NaN makes min and max NaN, and fails both comparisons)
        if not (-FLOAT32_OVERFLOW < array.min() and array.max() < FLOAT32_OVERFLOW):
            bad = np.argwhere(~(np.abs(array) < FLOAT32_OVERFLOW))[0]
            raise NonFiniteError(f"{name} contains a value that is NaN or infinite in float32 "
                                 f"(first at row {bad[0]}, column {bad[1]}: "
                                 f"{array[bad[0], bad[1]]!r}); remove or replace such values",
                                 bad[0], bad[1])
        return array
    if array.dtype != dtype or not array.flags.c_contiguous:
        check_fits(array.size * np.dtype(dtype).itemsize, f"a contiguous {np.dtype(dtype).name} "
                   f"copy of {name}")
    with np.errstate(over="ignore", invalid="ignore"):  # reported below, as a clear error
        converted = np.ascontiguousarray(array, dtype=dtype)
    if not all_finite(converted):
        bad = np.argwhere(~np.isfinite(converted))[0]
        raise NonFiniteError(f"{name} contains a value that is NaN or infinite in "
                             f"{np.dtype(dtype).name} (first at row {bad[0]}, column {bad[1]}: "
                             f"{array[bad[0], bad[1]]!r}); remove or replace such values",
                             bad[0], bad[1])
    return converted


# Left free by the memory guard, for the interpreter, the caller's own arrays and page tables.
MEMORY_RESERVE = 64 * 2**20
# Requests below this are not checked: reading /proc and the cgroup files costs ~0.3 ms, more
# than many whole fits of a small net, and buffers this small are not what exhausts memory (an
# allocation that fails outright still raises MemoryError).
MEMORY_CHECK_THRESHOLD = 16 * 2**20


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().split()[0]
    except (OSError, IndexError):
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_headroom(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """Bytes this process's memory cgroup (and every cgroup above it) can still grow by before its
    limit; None without a limit. cgroup v2 (memory.max, memory.current) and v1
    (memory.limit_in_bytes, memory.usage_in_bytes)."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    headroom = None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            base, limit_name, usage_name = root, "memory.max", "memory.current"
            if not os.path.exists(os.path.join(base, "cgroup.controllers")):
                base = os.path.join(root, "unified")
        elif "memory" in controllers.split(","):
            base, limit_name, usage_name = (os.path.join(root, "memory"), "memory.limit_in_bytes",
                                            "memory.usage_in_bytes")
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):  # the cgroup itself, then its ancestors
            folder = os.path.join(base, *parts[:depth])
            limit = _read_int(os.path.join(folder, limit_name))
            usage = _read_int(os.path.join(folder, usage_name))
            if limit is None or usage is None or limit >= 2**60:  # v1 writes "no limit" as ~2**63
                continue
            room = max(limit - usage, 0)
            headroom = room if headroom is None else min(headroom, room)
    return headroom


def available_memory() -> int | None:
    """Bytes that can be allocated now without swapping or being killed: the kernel's
    MemAvailable, or less when a cgroup limit (a container, a batch job) leaves less."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
    headroom = _cgroup_headroom()
    return available if headroom is None else min(available, headroom)


def check_fits(n_bytes: int, what: str) -> None:
    """MemoryError, before allocating, for buffers larger than the memory that is available now
    (with overcommit such an allocation may 'succeed' and the process be killed later when the
    pages are touched)."""
    if n_bytes < MEMORY_CHECK_THRESHOLD:
        return
    available = available_memory()
    if available is not None and n_bytes > available - MEMORY_RESERVE:
        raise MemoryError(f"{what} would need {n_bytes / 2**30:,.2f} GiB but only "
                          f"{max(available - MEMORY_RESERVE, 0) / 2**30:,.2f} GiB of memory is "
                          f"available; use smaller layers or batches, or free memory")
