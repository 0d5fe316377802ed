"""Builds bpfast._core from src/bpfast/_core.pyx and the C kernels in csrc/.

Environment switches:
  BPFAST_FAIL_NO_OPENMP=1  fail instead of building a single-threaded library without OpenMP
  BPFAST_NATIVE=1          add -march=native (local builds only: the result may not run elsewhere)
  BPFAST_DEBUG=1           Cython bounds checks on, -O1 -g, AddressSanitizer and UBSan
  BPFAST_QUICK_BUILD=1     -O0: builds in seconds (against minutes) and runs many times slower;
                           for tests of the packaging (tests/test_build.py), never for use
"""

import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

try:
    from Cython.Build import cythonize
except ImportError:  # building an sdist's shipped C (_build_backend/backend.py)
    cythonize = None

HERE = os.path.dirname(os.path.abspath(__file__))


def load_probe():
    path = os.path.join(HERE, "src", "bpfast", "_openmp_probe.py")
    spec = importlib.util.spec_from_file_location("_openmp_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flag(name):
    return os.environ.get(name, "") not in ("", "0")


debug = flag("BPFAST_DEBUG")
# Release builds drop the debug information Python's own flags ask for (-g0 after them): it is
# most of the shared object's size (5.9 MB with it).
# Debug builds undo the -fwrapv of Python's own flags: under it GCC took 117 s instead of 38 s to
# compile a kernel unit with the sanitizers (Zen 3), and without it UBSan also reports a signed
# overflow, which a release build would wrap silently.
compile_args = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                "-fno-wrapv"] if debug \
    else ["-O0", "-g0"] if flag("BPFAST_QUICK_BUILD") else ["-O3", "-g0"]
# The kernels write their fused multiply-adds out (csrc/isa.inc.c); the compiler must not add
# others of its own, which could differ between the serial and OpenMP copies of a kernel.
compile_args.append("-ffp-contract=off")
# sqrt (Adam's update) as one instruction: errno is never read, and the results are the same.
compile_args.append("-fno-math-errno")
link_args = ["-fsanitize=address,undefined"] if debug else []
if flag("BPFAST_NATIVE"):
    compile_args.append("-march=native")

openmp_flags = load_probe().probe_openmp()
if openmp_flags is None:
    message = ("bpfast: the C compiler cannot build OpenMP programs, so this build of bpfast will "
               "run on ONE thread. Install an OpenMP runtime (e.g. libgomp with gcc, libomp with "
               "clang) and reinstall, or set BPFAST_FAIL_NO_OPENMP=1 to make this an error.")
    if flag("BPFAST_FAIL_NO_OPENMP"):
        sys.exit("error: " + message)
    print("\n" + "*" * 100 + "\nWARNING: " + message + "\n" + "*" * 100 + "\n", file=sys.stderr)
    openmp_flags = []
compile_args += openmp_flags
link_args += openmp_flags

directives = {
    "language_level": 3,
    "boundscheck": debug,
    # Kept on: the hot loops are in C, and with it off a negative index on a Python list in the
    # .pyx silently reads out of bounds.
    "wraparound": True,
    "initializedcheck": debug,
    "cdivision": True,
    "embedsignature": True,
}

PYX, GENERATED = "src/bpfast/_core.pyx", "src/bpfast/_core.c"

extension = Extension(
    "bpfast._core",
    # One translation unit per instruction set, compiled in parallel (ParallelBuildExt).
    sources=[PYX if cythonize else GENERATED, "csrc/kernels_avx512.c", "csrc/kernels_avx2.c",
             "csrc/kernels_baseline.c", "csrc/bpfast.c", "csrc/workspace.c", "csrc/runtime.c"],
    include_dirs=["csrc"],
    depends=["csrc/bpfast.h", "csrc/internal.h", "csrc/isa.inc.c", "csrc/variant.inc.c",
             "csrc/kernels.inc.c", "csrc/units.inc.c", "csrc/small_nets.inc.c",
             "csrc/recurrent.inc.c", "csrc/population.inc.c", "csrc/train.inc.c", "csrc/api.inc.c",
             "csrc/workspace.inc.c"],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    define_macros=[("BPFAST_CFLAGS", '"' + " ".join(compile_args) + '"')],
)



# The units that take longest to compile, longest first (ParallelBuildExt).
COMPILE_ORDER = {"kernels_avx512": 0, "kernels_avx2": 1, "kernels_baseline": 2}


class ParallelBuildExt(build_ext):
    """Compiles an extension's sources on every core at once (setuptools compiles them one by
    one): the per-ISA kernel units take most of the build."""

    def build_extensions(self):
        # Without Cython, only an sdist's shipped C can be built (and only as a release build);
        # said here, not when setup.py is read: the build backend reads it before installing
        # Cython to learn what else it needs.
        if cythonize is None:
            if not os.path.exists(os.path.join(HERE, GENERATED)):
                sys.exit("error: building bpfast from a checkout needs Cython (pip install cython)")
            if debug:
                sys.exit("error: BPFAST_DEBUG=1 builds need Cython (pip install cython): the C "
                         "an sdist ships has the release directives")
        compile_one = self.compiler.compile

        def compile_source(source, args, kwargs):
            if debug and source.endswith("_core.c"):
                # The Cython glue at -O0 in a debug build: at -O1 under the sanitizers it alone
                # took 113 s to compile (against 10 s), the longest compile in CI, and the hot loops
                # it would speed up are in csrc/ (still -O1).
                kwargs = dict(kwargs, extra_postargs=list(kwargs.get("extra_postargs") or [])
                              + ["-O0"])
            return compile_one([source], *args, **kwargs)

        def compile_all(sources, *args, **kwargs):
            workers = max(1, min(len(sources), os.cpu_count() or 1))
            # The kernel units first, the widest instruction set's first: they take longest
            # (Zen 3, release: avx512 28 s, avx2 19 s, baseline 18 s, the Cython glue 19 s), and
            # a long one started last would leave the other core idle at the end.
            order = sorted(sources, key=lambda source: COMPILE_ORDER.get(
                os.path.splitext(os.path.basename(source))[0], len(COMPILE_ORDER)))
            with ThreadPoolExecutor(workers) as pool:
                objects = dict(zip(order, pool.map(
                    lambda source: compile_source(source, args, kwargs), order)))
            return [obj for source in sources for obj in objects[source]]

        self.compiler.compile = compile_all
        super().build_extensions()


class SdistWithC(sdist):
    """An sdist that ships the C Cython generates from _core.pyx (release directives), freshly
    made, so that building it needs no Cython."""

    def run(self):
        if cythonize is None:
            sys.exit("error: making an sdist needs Cython (pip install cython)")
        release = dict(directives, boundscheck=False, initializedcheck=False)
        cythonize([Extension("bpfast._core", [PYX])], compiler_directives=release, force=True)
        super().run()


# Debug and release builds are kept apart, the C that Cython generates included: setuptools and
# Cython reuse what is newer than its sources whatever the flags, so two builds sharing build/
# would link each other's objects. (The C an sdist ships sits beside the .pyx instead.)
build_base = os.path.join("build", "debug" if debug else "release")
extensions = [extension] if cythonize is None else \
    cythonize([extension], compiler_directives=directives,
              build_dir=os.path.join(build_base, "cython"))
setup(ext_modules=extensions,
      cmdclass={"build_ext": ParallelBuildExt, "sdist": SdistWithC},
      options={"build": {"build_base": build_base}})
