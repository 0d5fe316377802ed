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


@pytest.mark.slow
def test_the_sdist_ships_its_c_and_builds_without_cython(tmp_path):
    """`python -m build --sdist` (from a copy of the checkout, in the isolated environment the
    backend asks for) ships the C Cython generated; the backend then asks for no Cython, and pip
    builds a working wheel from the sdist in an isolated environment that has none."""
    import re
    import shutil
    import subprocess
    import sys
    import tarfile
    import zipfile

    root = os.path.join(os.path.dirname(__file__), os.pardir)
    checkout = tmp_path / "checkout"
    shutil.copytree(root, checkout, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "*.so", "_core.c", ".pytest_cache", "__pycache__",
        ".mypy_cache", ".benchmarks", ".venv"))
    made = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir",
                           str(tmp_path / "dist"), str(checkout)], capture_output=True, text=True)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    (sdist,) = (tmp_path / "dist").glob("bpfast-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
        tar.extractall(tmp_path / "unpacked", **safe)
    top = sdist.name[:-len(".tar.gz")]
    for shipped in ("src/bpfast/_core.c", "src/bpfast/_core.pyx", "LICENSE",
                    "_build_backend/backend.py", "src/bpfast/py.typed",
                    "tests/c/kernel_selftest.c", "tests/c/selftest_nets.h",
                    "tests/c/threads_selftest.c"):  # (tests/test_native.py compiles them)
        assert f"{top}/{shipped}" in names, shipped
    # -O0: what is checked here is what the sdist ships and how it builds, not the kernels'
    # speed; an -O3 build of every variant took 80 s of this test's 85 (2 cores)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w",
                            str(tmp_path / "wheels"), str(sdist)], capture_output=True, text=True,
                           env={**os.environ, "BPFAST_QUICK_BUILD": "1"})
    log = built.stdout + built.stderr
    assert built.returncode == 0, log[-3000:]
    # pip installed no Cython for the build, and the build compiled the shipped C
    assert not re.search(r"Collecting [Cc]ython|cythoniz|Compiling src/bpfast/_core.pyx", log)
    assert "_core.c" in log and "-O0" in log
    (wheel,) = (tmp_path / "wheels").glob("bpfast-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(tmp_path / "installed")
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import bpfast; "
              "X, T = bpfast.datasets.symmetry(); assert bpfast.__file__.startswith(sys.argv[1]); "
              "print(bpfast.Network([6, 2, 1], seed=1).fit(X, T, n_sweeps=3000, "
              "stop_tol=0.2).solved)")
    trained = subprocess.run([sys.executable, "-c", script, str(tmp_path / "installed")],
                             cwd=tmp_path, check=True, capture_output=True, text=True)
    assert trained.stdout.strip() == "True"


def test_a_debug_build_asks_for_cython_even_where_generated_c_is_at_hand(monkeypatch, tmp_path):
    """`python -m build` leaves the sdist's generated C in the checkout; a BPFAST_DEBUG build
    (.ci/sanitize) needs Cython all the same: the shipped C has the release directives."""
    import sys
    root = os.path.join(os.path.dirname(__file__), os.pardir)
    monkeypatch.syspath_prepend(os.path.join(root, "_build_backend"))
    import backend
    pyx = tmp_path / "src" / "bpfast" / "_core.pyx"
    pyx.parent.mkdir(parents=True)
    pyx.write_text("")
    (pyx.parent / "_core.c").write_text("")  # newer than the .pyx: a release build needs none
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BPFAST_DEBUG", raising=False)
    assert not backend.cython_needed()
    monkeypatch.setenv("BPFAST_DEBUG", "1")
    assert backend.cython_needed()
    sys.modules.pop("backend", None)
