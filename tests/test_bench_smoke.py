"""The comparison script's smoke mode: every installed tool verified and timed on tiny sizes."""

import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), os.pardir, "bench", "compare.py")


def test_compare_smoke_runs_and_verifies_every_tool():
    # One thread count keeps this at a few seconds; the two-thread path of the same code is
    # timed by the full run (python bench/compare.py) and by pytest -m slow below.
    out = subprocess.run([sys.executable, BENCH, "--smoke", "--threads", "1"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "DISAGREES" not in out.stderr
    for key in ("W1", "W2", "W3", "W4"):
        assert f"### {key}" in out.stdout
    # bpfast and the reference are always there, with a ratio between them.
    assert "bpfast vs reference" in out.stdout


@pytest.mark.slow
def test_compare_smoke_runs_on_one_and_two_threads():
    out = subprocess.run([sys.executable, BENCH, "--smoke"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert "DISAGREES" not in out.stderr
    assert "\n| 2 |" in out.stdout
