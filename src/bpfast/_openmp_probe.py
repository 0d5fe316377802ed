"""Does this machine's C compiler build and run an OpenMP program?

Used by setup.py at build time (loaded by path, before bpfast exists) and by the test that fails
when an installed build lacks OpenMP although the probe succeeds. Standard library only.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile

PROBE_SOURCE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n);
    return n >= 1 ? 0 : 1;
}
"""

# Flags to try, in order, on compilers that spell OpenMP differently.
CANDIDATE_FLAGS = (["-fopenmp"], ["-Xpreprocessor", "-fopenmp", "-lomp"])


def compiler_command() -> list[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def probe_openmp() -> list[str] | None:
    """The flags that compile, link and run an OpenMP program, or None if none do."""
    if sys.platform == "win32":
        return None
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(source, "w") as f:
            f.write(PROBE_SOURCE)
        for flags in CANDIDATE_FLAGS:
            try:
                built = subprocess.run(compiler_command() + [source, "-o", exe] + flags,
                                       capture_output=True, timeout=120)
                if built.returncode == 0 and subprocess.run(
                        [exe], capture_output=True, timeout=60).returncode == 0:
                    return flags
            except (OSError, subprocess.SubprocessError):
                continue
    return None


if __name__ == "__main__":
    print(probe_openmp())
