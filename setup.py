"""Builds bpfast._core from src/bpfast/_core.pyx and the C kernels in csrc/.

Environment switches:
  BPFAST_FAIL_NO_OPENMP=1  fail instead of building a single-threaded library without OpenMP
  BPFAST_NATIVE=1          add -march=native (local builds only: the result may not run elsewhere)
  BPFAST_DEBUG=1           Cython bounds checks on, -O1 -g, AddressSanitizer and UBSan
"""

import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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
compile_args = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"] if debug \
    else ["-O3", "-g0"]
# The kernels write their fused multiply-adds out (csrc/isa.inc.c); the compiler must not add
# others of its own, which could differ between the serial and OpenMP copies of a kernel.
compile_args.append("-ffp-contract=off")
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

extension = Extension(
    "bpfast._core",
    # One translation unit per instruction set, compiled in parallel (ParallelBuildExt).
    sources=["src/bpfast/_core.pyx", "csrc/kernels_avx512.c", "csrc/kernels_avx2.c",
             "csrc/kernels_baseline.c", "csrc/bpfast.c", "csrc/workspace.c", "csrc/runtime.c"],
    include_dirs=["csrc"],
    depends=["csrc/bpfast.h", "csrc/internal.h", "csrc/isa.inc.c", "csrc/variant.inc.c",
             "csrc/kernels.inc.c", "csrc/small_nets.inc.c", "csrc/train.inc.c", "csrc/api.inc.c",
             "csrc/workspace.inc.c"],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    define_macros=[("BPFAST_CFLAGS", '"' + " ".join(compile_args) + '"')],
)



class ParallelBuildExt(build_ext):
    """Compiles an extension's sources on every core at once (setuptools compiles them one by
    one): the per-ISA kernel units take most of the build."""

    def build_extensions(self):
        compile_one = self.compiler.compile

        def compile_all(sources, *args, **kwargs):
            workers = max(1, min(len(sources), os.cpu_count() or 1))
            with ThreadPoolExecutor(workers) as pool:
                objects = pool.map(lambda source: compile_one([source], *args, **kwargs), sources)
                return [obj for group in objects for obj in group]

        self.compiler.compile = compile_all
        super().build_extensions()


# Debug and release builds are kept apart, the C that Cython generates included: setuptools and
# Cython reuse what is newer than its sources whatever the flags, so two builds sharing build/
# would link each other's objects.
build_base = os.path.join("build", "debug" if debug else "release")
setup(ext_modules=cythonize([extension], compiler_directives=directives,
                            build_dir=os.path.join(build_base, "cython")),
      cmdclass={"build_ext": ParallelBuildExt},
      options={"build": {"build_base": build_base}})
