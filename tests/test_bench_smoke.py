"""The comparison script's smoke mode: every installed tool verified and timed on tiny sizes."""

import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(__file__), os.pardir, "bench", "compare.py")


def test_compare_smoke_runs_and_verifies_every_tool():
    out = subprocess.run([sys.executable, BENCH, "--smoke"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert "DISAGREES" not in out.stderr
    for key in ("W1", "W2", "W3", "W4"):
        assert f"### {key}" in out.stdout
    # bpfast and the reference are always there, with a ratio between them.
    assert "bpfast vs reference" in out.stdout
