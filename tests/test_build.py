"""The installed build: OpenMP present where the compiler supports it, portable flags."""

import os

import pytest

import bpfast
from bpfast._openmp_probe import probe_openmp


def test_build_info_reports_the_build():
    info = bpfast.build_info()
    assert set(info) == {"openmp", "openmp_max_threads", "simd", "simd_available", "compile_args"}
    assert info["openmp_max_threads"] >= 1
    assert info["simd"] in info["simd_available"]
    assert "baseline" in info["simd_available"]


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


def test_the_best_variant_is_used_unless_one_is_asked_for():
    from bpfast import _core
    if os.environ.get("BPFAST_ISA"):
        assert bpfast.build_info()["simd"] == os.environ["BPFAST_ISA"]
    else:
        assert bpfast.build_info()["simd"] == _core.available_isas()[0]
    with pytest.raises(ValueError, match="unknown or not supported"):
        _core.set_isa("sse9")


def test_the_distribution_says_its_license_and_that_it_is_typed():
    import importlib.metadata
    meta = importlib.metadata.metadata("bpfast")
    assert meta.get("License-Expression") == "MIT" and "LICENSE" in meta.get_all("License-File")
    assert "Typing :: Typed" in meta.get_all("Classifier")
