"""How this copy of bpfast was built."""

from __future__ import annotations

from . import _core


def build_info() -> dict:
    """OpenMP support, the threads it would use, the SIMD level and the C compiler flags.

    Returns
    -------
    dict with keys "openmp" (bool), "openmp_max_threads" (int), "simd" (str: the kernel
    variant in use), "simd_available" (list of str: the variants this CPU can run, best first)
    and "compile_args" (str).
    """
    return _core.build_facts()
