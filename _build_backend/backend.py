"""setuptools' build backend, asking for Cython only where the C it generates is not at hand.

A git checkout has only src/bpfast/_core.pyx: building it needs Cython. An sdist ships the C that
Cython generated from it (setup.py's sdist command regenerates it first), so a wheel builds from
the sdist with a C compiler alone. Every other hook is setuptools' own.
"""

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # the hooks not changed here

CYTHON = "Cython>=3.0"
PYX = os.path.join("src", "bpfast", "_core.pyx")
GENERATED = os.path.join("src", "bpfast", "_core.c")


def cython_needed() -> bool:
    """No generated C, or C older than the .pyx (edited since), or a debug build (BPFAST_DEBUG=1:
    the shipped C has the release directives; `python -m build` leaves it in a checkout too):
    Cython must run."""
    return (os.environ.get("BPFAST_DEBUG", "") not in ("", "0") or not os.path.exists(GENERATED)
            or os.path.getmtime(GENERATED) < os.path.getmtime(PYX))


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + \
        ([CYTHON] if cython_needed() else [])


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + \
        ([CYTHON] if cython_needed() else [])


def get_requires_for_build_sdist(config_settings=None):
    # the sdist carries freshly generated C
    return _setuptools.get_requires_for_build_sdist(config_settings) + [CYTHON]
