"""The symmetry experiment (Nature Fig. 1) with the paper's settings, and the demo command."""

import subprocess
import sys

import numpy as np
import pytest

from bpfast import symmetry
from bpfast.experiments import EXPERIMENTS

# 40 seeds rather than the 10: the solve rate is about 0.9 (0.92 over seeds 0-199 here, ~0.9
# in published replications), and a 10-seed window of such a process has 7 or fewer solved runs
# about 7% of the time - seeds 0-9 happen to be such a window (7/10). 40 seeds at the same 80%
# bound is the stricter and steadier test.
N_SEEDS, MIN_SOLVED = 40, 32


@pytest.fixture(scope="module")
def runs():
    # one population: each seed bit for bit as symmetry.run(seed) (tests/test_population.py)
    return [(o.network, o.result) for o in EXPERIMENTS["symmetry"].run_seeds(range(N_SEEDS))]


def test_most_seeds_solve_within_20000_sweeps(runs):
    solved = [result for _, result in runs if result.solved]
    assert len(solved) >= MIN_SOLVED
    for net, result in runs:
        if result.solved:
            assert result.n_sweeps < symmetry.MAX_SWEEPS
            assert symmetry.right_side_of_half(net)
        else:  # the failures are the paper's plateau, not a crash or a divergence
            assert result.n_sweeps == symmetry.MAX_SWEEPS
            assert np.isfinite(result.final_error)


def test_every_solved_net_has_the_papers_structure(runs):
    for net, result in runs:
        if not result.solved:
            continue
        s = symmetry.describe_solution(net)
        # Mirror-position weights equal in size and opposite in sign.
        assert s.antisymmetry < 0.05
        # The two hidden units carry the same pattern with opposite signs (their overall sizes
        # may differ, so compare directions).
        w0, w1 = s.hidden_weights
        assert np.dot(w0, w1) / (np.linalg.norm(w0) * np.linalg.norm(w1)) < -0.99
        # Negative hidden biases, negative hidden-to-output weights, positive output bias.
        assert np.all(s.hidden_bias < 0) and np.all(s.output_weights < 0) and s.output_bias > 0
        # Magnitudes distinct enough that no two mirror-differences cancel: this is what makes
        # the net a symmetry detector, whichever ratios it found.
        sums = [abs(a * s.magnitude_ratios[0, 0] + b * s.magnitude_ratios[0, 1] +
                    c * s.magnitude_ratios[0, 2])
                for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)]
        assert min(sums) > 0.3


def test_most_solved_nets_have_magnitudes_near_1_2_4(runs):
    """The paper's 1 : 2 : 4 is backprop's usual answer but not its only one: about a fifth of the
    solved nets here (and in 200 seeds) find another antisymmetric solution near 1 : 1.55 : 2.07.
    So 1 : 2 : 4 within 15% is asserted for most solved nets, not for each."""
    near_124 = [symmetry.has_paper_magnitudes(net) for net, result in runs if result.solved]
    assert sum(near_124) >= 0.6 * len(near_124)


def test_float32_and_float64_solve_in_the_same_number_of_sweeps():
    for seed in (1, 3, 5):
        _, r32 = symmetry.run(seed=seed, dtype="float32")
        _, r64 = symmetry.run(seed=seed, dtype="float64")
        assert r32.solved and r64.solved
        assert abs(r32.n_sweeps - r64.n_sweeps) <= 2


def test_python_m_bpfast_runs_the_demo():
    out = subprocess.run([sys.executable, "-m", "bpfast"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "solved in" in out.stdout and "paper" in out.stdout and "1 : 2 : 4" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "bpfast", "--nonsense"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "bpfast: error: unrecognized arguments: --nonsense" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_symmetry_helpers_refuse_other_nets():
    import bpfast
    for net in (bpfast.Network([4, 2, 1]), bpfast.Network([6, 3, 1]), bpfast.Network([8, 2, 1])):
        with pytest.raises(ValueError, match="Network\\(\\[6, 2, 1\\]\\)"):
            symmetry.describe_solution(net)
        with pytest.raises(ValueError, match="Network\\(\\[6, 2, 1\\]\\)"):
            symmetry.has_paper_magnitudes(net)
    no_bias = bpfast.Network([6, 2, 1], bias=False)
    with pytest.raises(ValueError, match="needs the symmetry net's biases"):
        symmetry.describe_solution(no_bias)


def test_a_run_without_a_seed_can_be_repeated_from_its_outcome():
    experiment = EXPERIMENTS["family-trees"]
    first = experiment.run(seed=None)
    assert isinstance(first.seed, int) and first.seed == first.network.seed
    again = experiment.run(seed=first.seed)
    np.testing.assert_array_equal(first.network.params, again.network.params)
