"""The C core on its own: the kernel self-test (tests/c/kernel_selftest.c, which .ci/aarch64 also
runs under qemu-user) built and run natively, and the register tiles of every x86-64 variant
checked in the generated assembly for spills (bench/spills.py)."""

import os
import platform
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
CSRC = os.path.join(ROOT, "csrc")
FLAGS = ["-O3", "-ffp-contract=off", "-fopenmp", f"-I{CSRC}"]  # setup.py's release flags
CC = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (the extension was prebuilt)")


def compile_all(jobs):
    """Run (args) compiler jobs on every core; fail with the compiler's output."""
    def run(args):
        return subprocess.run([CC, *args], capture_output=True, text=True)
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for done in pool.map(run, jobs):
            assert done.returncode == 0, done.stderr


def test_the_kernel_self_test_passes(tmp_path):
    sources = ["bpfast.c", "workspace.c", "runtime.c", "kernels_baseline.c", "kernels_avx2.c",
               "kernels_avx512.c"]
    objects = [str(tmp_path / (s + ".o")) for s in sources]
    compile_all([[*FLAGS, "-c", os.path.join(CSRC, s), "-o", o]
                 for s, o in zip(sources, objects)])
    exe = str(tmp_path / "selftest")
    compile_all([[*FLAGS, os.path.join(ROOT, "tests", "c", "kernel_selftest.c"), *objects, "-lm",
                  "-o", exe]])
    out = subprocess.run([exe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed: 0 check(s) failed" in out.stdout
    assert "FAIL" not in out.stdout
    assert out.stdout.count("\nok ") >= 3 * 5  # the baseline variant's checks on three nets


@pytest.mark.slow  # ~35 s compiling every variant to assembly: in the slow job (README)
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 variants")
def test_no_register_tile_spills_in_any_x86_variant(tmp_path):
    jobs, listings = [], []
    for isa in ("baseline", "avx2", "avx512"):
        listings.append(str(tmp_path / f"{isa}.s"))
        jobs.append([*FLAGS, "-S", os.path.join(CSRC, f"kernels_{isa}.c"), "-o", listings[-1]])
    compile_all(jobs)
    for listing in listings:
        out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "spills.py"), listing],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout
        # every tile shape was found: full tiles, the remainder tiles, and the dot tiles
        for kind in ("tile_full_", "tile_rows3_", "tile_rows2_", "tile_rows1_", "dots_"):
            assert kind in out.stdout, (listing, out.stdout)
