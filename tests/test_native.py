"""The C core on its own: the kernel self-test (tests/c/kernel_selftest.c, which .ci/aarch64 also
runs under qemu-user) and the threads self-test (tests/c/threads_selftest.c, which .ci/tsan runs
under ThreadSanitizer) built and run natively, and the register tiles of every x86-64 variant
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


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every C source compiled once with the release flags: {source: (object, assembly)}. The
    assembly is the compiler's own (-save-temps), so the spill check reads the listing of the
    very objects the self-test links."""
    out = tmp_path_factory.mktemp("csrc")
    sources = ["bpfast.c", "workspace.c", "runtime.c", "kernels_baseline.c", "kernels_avx2.c",
               "kernels_avx512.c"]
    compile_all([[*FLAGS, "-save-temps=obj", "-c", os.path.join(CSRC, s),
                  "-o", str(out / (s[:-2] + ".o"))] for s in sources])
    return {s: (str(out / (s[:-2] + ".o")), str(out / (s[:-2] + ".s"))) for s in sources}


# ~35 s compiling the core (three variants at -O3) on 2 cores: in the slow job (README), where the
# spill check below shares the compilation; CI's aarch64 step runs the same self-test under qemu.
@pytest.mark.slow
def test_the_kernel_self_test_passes(built, tmp_path):
    exe = str(tmp_path / "selftest")
    compile_all([[*FLAGS, os.path.join(ROOT, "tests", "c", "kernel_selftest.c"),
                  *(obj for obj, _ in built.values()), "-lm", "-o", exe]])
    out = subprocess.run([exe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed: 0 check(s) failed" in out.stdout
    assert "FAIL" not in out.stdout
    assert out.stdout.count("\nok ") >= 3 * 5  # the baseline variant's checks on three nets


# ~20 s on 2 cores with the module's objects: random nets trained on 2 and 5 threads, whole and cut
# into calls with random deadlines, against 1 thread bit for bit (.ci/tsan runs it under
# ThreadSanitizer with clang's OpenMP; this is GCC's runtime, the release build's)
@pytest.mark.slow
def test_the_threads_self_test_passes(built, tmp_path):
    exe = str(tmp_path / "threads_selftest")
    compile_all([[*FLAGS, os.path.join(ROOT, "tests", "c", "threads_selftest.c"),
                  *(obj for obj, _ in built.values()), "-lm", "-o", exe]])
    out = subprocess.run([exe, "2"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed: 0 failure(s)" in out.stdout and "FAIL" not in out.stdout
    assert out.stdout.count("ok ") >= 1  # at least the baseline variant ran its rounds
    calls = int(out.stdout.split("failure(s); ")[1].split()[0])
    paused = int(out.stdout.split(" calls, ")[1].split()[0])
    assert calls > 500 and paused > 0  # the cut runs made calls, and some paused mid-sweep


def compiler_is_clang() -> bool:
    out = subprocess.run([CC, "--version"], capture_output=True, text=True)
    return "clang" in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 variants")
@pytest.mark.skipif(CC is not None and compiler_is_clang(),
                    reason="the tiles are sized for GCC's registers (the release compiler); "
                           "clang keeps some of baseline's 4x3 tile on the stack (4-6 accesses "
                           "a step)")
def test_no_register_tile_spills_in_any_x86_variant(built):
    for isa in ("baseline", "avx2", "avx512"):
        listing = built[f"kernels_{isa}.c"][1]
        out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "spills.py"), listing],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout
        # every tile shape was found: full tiles, the remainder tiles, and the dot tiles
        for kind in ("tile_full_", "tile_rows3_", "tile_rows2_", "tile_rows1_", "dots_"):
            assert kind in out.stdout, (listing, out.stdout)
