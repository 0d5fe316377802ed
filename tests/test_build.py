"""The installed build: OpenMP present where the compiler supports it, portable flags."""

import os

import pytest

import bpfast
from bpfast._openmp_probe import probe_openmp


def test_build_info_reports_the_build():
    info = bpfast.build_info()
    assert set(info) == {"openmp", "openmp_max_threads", "simd", "compile_args"}
    assert info["openmp_max_threads"] >= 1
    assert info["simd"]


@pytest.mark.skipif(os.environ.get("BPFAST_ALLOW_NO_OPENMP") == "1",
                    reason="BPFAST_ALLOW_NO_OPENMP=1: a single-threaded build is accepted")
def test_openmp_is_on_when_the_compiler_supports_it():
    if probe_openmp() is None:
        pytest.skip("this machine's C compiler cannot build OpenMP programs")
    assert bpfast.build_info()["openmp"], (
        "bpfast was built without OpenMP although the compiler supports it: reinstall it "
        "(set BPFAST_ALLOW_NO_OPENMP=1 to accept a single-threaded build)")


def test_default_flags_are_portable():
    if os.environ.get("BPFAST_NATIVE", "") not in ("", "0"):
        pytest.skip("BPFAST_NATIVE build")
    args = bpfast.build_info()["compile_args"]
    assert "-march=native" not in args and "fast-math" not in args and "-Ofast" not in args
