"""The comparison script's smoke mode: every installed tool verified and timed on tiny sizes."""

import importlib.util
import os
import subprocess
import sys

import pytest

from bpfast import _core

BENCH = os.path.join(os.path.dirname(__file__), os.pardir, "bench", "compare.py")


def test_compare_smoke_runs_and_verifies_every_tool_and_variant():
    # One thread count keeps this at a few seconds; the two-thread path of the same code is
    # timed by the full run (python bench/compare.py) and by pytest -m slow below.
    out = subprocess.run([sys.executable, BENCH, "--smoke", "--threads", "1", "--isa", "all"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "DISAGREES" not in out.stderr
    assert "sgemm" in out.stdout
    # smoke sizes are too small to time: no verdicts on the targets (W7's table included)
    assert "MISSED" not in out.stdout and "target missed" not in out.stdout
    assert "### W7" in out.stdout  # the recurrent net, verified by bench/recurrent.py
    w7 = out.stdout.split("### W7")[1]
    for isa in _core.available_isas():
        assert f"| {isa} |" in w7
    for key in ("W1", "W2", "W3", "W4"):
        assert f"### {key}" in out.stdout
        table = out.stdout.split(f"### {key}")[1].split("###")[0]
        # a row per variant, each with a rate and a ratio to NumPy (always installed)
        for isa in _core.available_isas():
            row = next(line for line in table.splitlines() if line.startswith(f"| 1 | {isa} |"))
            assert row.count("×") >= 1


@pytest.mark.slow
def test_compare_smoke_runs_on_one_and_two_threads():
    out = subprocess.run([sys.executable, BENCH, "--smoke"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert "DISAGREES" not in out.stderr
    assert "\n| 2 |" in out.stdout


REAL_DATA = os.path.join(os.path.dirname(__file__), os.pardir, "bench", "real_data.py")


@pytest.mark.slow
def test_real_data_smoke_verifies_every_tool():
    pytest.importorskip("sklearn")
    out = subprocess.run([sys.executable, REAL_DATA, "--smoke", "--threads", "1"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "DISAGREES" not in out.stderr
    for name in ("digits", "synthetic"):
        table = out.stdout.split(f"### {name}")[1].split("###")[0]
        for tool in ("bpfast", "bpfast-sgd", "mlp-adam", "mlp-sgd"):
            assert f"| 1 | {tool} |" in table


POPULATIONS = os.path.join(os.path.dirname(__file__), os.pardir, "bench", "populations.py")


def test_populations_smoke_verifies_every_tool_and_variant():
    out = subprocess.run([sys.executable, POPULATIONS, "--smoke", "--threads", "1", "--isa",
                          "all"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "MISMATCH" not in out.stdout
    for isa in _core.available_isas():
        assert f"verified population {isa}: ok" in out.stdout
        assert f"verified loop of networks {isa}: ok" in out.stdout
    assert "verified numpy batched: ok" in out.stdout
    assert "## W5" in out.stdout and "## W6" in out.stdout


def test_ab_smoke_compares_a_build_with_itself():
    """bench/ab.py loads two builds side by side under other names; the installed package against
    itself must give the same weights bit for bit on every workload, and a row for each."""
    package = os.path.dirname(_core.__file__)
    ab = os.path.join(os.path.dirname(BENCH), "ab.py")
    keys = ["W1", "W3", "S", "digits", "W5", "W7"]
    if importlib.util.find_spec("sklearn") is not None:  # SE trains the scikit-learn estimator
        keys.append("SE")
    out = subprocess.run([sys.executable, ab, package, package, "--smoke", "--rounds", "1",
                          "--workloads", *keys], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "DIFFERS" not in out.stdout
    for key in keys:
        assert f"| {key} |" in out.stdout
