"""The bpfast command, the experiment presets and the pictures."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from bpfast import datasets
from bpfast.__main__ import main
from bpfast.experiments import EXPERIMENTS, FAMILY_TREES_CHANGES


def bpfast(*args):
    return subprocess.run([sys.executable, "-m", "bpfast", *args], capture_output=True, text=True,
                          timeout=300)


def test_list_names_every_experiment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(EXPERIMENTS)
    for name in ("symmetry", "family-trees-literal", "family-trees", "xor", "xor-2-2-1", "parity4",
                 "encoder838", "negation", "addition"):
        assert name in EXPERIMENTS


def test_run_symmetry_prints_a_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "sym.json"
    assert main(["run", "symmetry", "--seeds", "4", "--threads", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "solved" in out and "paper, sweeps to solve: 1,425" in out
    record = json.loads(path.read_text())
    assert record["experiment"] == "symmetry" and record["seeds"] == [0, 1, 2, 3]
    assert [r["seed"] for r in record["runs"]] == [0, 1, 2, 3]
    assert record["runs"][0]["solved"] is False and record["runs"][1]["solved"] is True
    assert record["summary"]["solved_fraction"] == pytest.approx(
        np.mean([r["solved"] for r in record["runs"]]))


def test_run_family_trees_reports_held_out_accuracy_over_splits(tmp_path, capsys):
    path = tmp_path / "ft.json"
    assert main(["run", "family-trees", "--seeds", "3", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "held out" in out and "our splits" in out
    record = json.loads(path.read_text())
    assert record["notes"] == FAMILY_TREES_CHANGES
    assert "U(-1, 1)" in out and "does not converge" in EXPERIMENTS["family-trees-literal"].notes
    splits = [tuple(map(tuple, r["held_out_queries"])) for r in record["runs"]]
    assert len(set(splits)) == 3  # each seed its own split
    assert all(0 <= r["held_out_correct"] <= 4 for r in record["runs"])


def test_the_modified_family_trees_recipe_learns_and_the_literal_one_does_not():
    modified = [EXPERIMENTS["family-trees"].run(seed=s) for s in range(5)]
    literal = [EXPERIMENTS["family-trees-literal"].run(seed=s) for s in range(3)]
    assert np.mean([o.measures["train_accuracy"] for o in modified]) > 0.9
    assert all(o.measures["train_accuracy"] == 0 for o in literal)
    # The literal recipe's outputs sink towards the edge of the dead zone (paper.md section 3).
    trees = datasets.family_trees()
    outputs = literal[0].network.predict(trees.X)
    assert outputs.max() < 0.5 and abs(np.median(outputs) - 0.2) < 0.1


@pytest.mark.parametrize("args,message", [
    (["run", "nonsense"], "unknown experiment 'nonsense'"),
    (["run", "symmetry", "--seeds", "x"], "invalid int value"),
    (["run", "symmetry", "--seeds", "0"], "--seeds must be at least 1"),
    (["run", "symmetry", "--threads", "0"], "n_threads must be >= 1"),
    (["frobnicate"], "invalid choice"),
    (["run", "xor", "--seeds", "1", "--plot", "x.png"], "no figure for xor"),
    (["run", "symetry"], "did you mean 'symmetry'?"),
    (["run", "symmetry", "--se", "3"], "unrecognized arguments: --se"),  # no abbreviations
    (["run", "symmetry", "--seed", "1", "--seeds", "2"], "not allowed with argument"),
    (["run", "symmetry", "--seed", "-1"], "--seed must be 0 or more"),
    (["run", "symmetry", "--json", "/nonexistent-directory/x.json"], "does not exist"),
    (["run", "symmetry", "--json", "."], "is a directory"),
    # a missing folder named with its slash: realpath drops the slash, so this once passed the
    # check and failed only after training
    (["run", "symmetry", "--json", "/tmp/bpfast-no-such-folder/"], "names a directory"),
    (["run", "symmetry", "--plot", "/tmp/bpfast-no-such-folder/"], "names a directory"),
    (["run", "symmetry", "--json", ""], "--json needs a file name"),
    # not a file named "-" in the working directory
    (["run", "symmetry", "--json", "-"], "--json /dev/stdout writes to the standard output"),
])
def test_errors_are_one_line_and_exit_2(args, message):
    out = bpfast(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_a_closed_stdout_is_an_error_not_lost_results():
    """`>&-`: Python then has no sys.stdout and print() writes nothing; the run exited 0."""
    out = subprocess.run(f"{sys.executable} -m bpfast run xor --seeds 1 >&-", shell=True,
                         capture_output=False, stderr=subprocess.PIPE, text=True, timeout=300)
    assert out.returncode == 2
    assert "the standard output is closed" in out.stderr


def test_progress_bar_stays_quiet_when_piped():
    out = bpfast("run", "xor", "--seeds", "2")
    assert out.returncode == 0 and out.stderr == ""


def test_hinton_squares_are_the_weights():
    from bpfast.plots import hinton_squares
    W = np.array([[1.0, -0.25], [0.0, 4.0]])
    squares = hinton_squares(W)
    assert [(i, j, c) for i, j, _, c in squares] == [(0, 0, "white"), (0, 1, "black"),
                                                    (1, 1, "white")]
    # side = sqrt(|w| / max|w|): the area is proportional to the weight's size
    assert [s for *_, s, _ in squares] == pytest.approx([0.5, 0.25, 1.0])


def test_plots_are_written_and_draw_the_networks_weights(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from bpfast import plots
    drawn = []
    real = plots.hinton_squares
    monkeypatch.setattr(plots, "hinton_squares",
                        lambda W, m=None: drawn.append(np.array(W)) or real(W, m))
    sym = tmp_path / "sym.png"
    assert main(["run", "symmetry", "--seeds", "2", "--plot", str(sym)]) == 0
    assert sym.stat().st_size > 1000
    best = EXPERIMENTS["symmetry"].run(seed=1).network  # seed 0 is not solved; 1 has lower E
    np.testing.assert_array_equal(drawn[0], best.weights("hidden1", "input"))
    drawn.clear()
    ft = tmp_path / "ft.png"
    assert main(["run", "family-trees", "--seeds", "1", "--plot", str(ft)]) == 0
    assert ft.stat().st_size > 1000
    W = EXPERIMENTS["family-trees"].run(seed=0).network.weights("person_code", "person")
    assert len(drawn) == 6
    for unit, block in enumerate(drawn):  # English row (12) above Italian row (12)
        np.testing.assert_array_equal(block, W[unit].reshape(2, 12))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_progress_bar_shows_on_a_terminal():
    import os
    import pty
    leader, follower = pty.openpty()
    try:
        out = subprocess.run([sys.executable, "-m", "bpfast", "run", "xor-2-2-1", "--seeds", "2"],
                             stdout=subprocess.PIPE, stderr=follower, text=True, timeout=300)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: everything has been read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert out.returncode == 0
    # the population's bar: sweeps done and the seeds still training, then the line is cleared
    assert re.search(rb"\r\[[#.]{30}\] sweep [0-9,]+/10,000, [0-9] of 2 training", shown)
    assert shown.endswith(b"\r")


def test_version_and_the_presets_in_help():
    from bpfast import __version__
    assert bpfast("--version").stdout.strip() == f"bpfast {__version__}"
    help_text = bpfast("run", "--help").stdout
    for name in EXPERIMENTS:
        assert name in help_text


def test_seed_runs_one_seed_and_says_where_it_wrote(tmp_path, capsys):
    path = tmp_path / "one.json"
    assert main(["run", "xor", "--seed", "3", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    record = json.loads(path.read_text())
    assert record["seeds"] == [3] and [r["seed"] for r in record["runs"]] == [3]
    assert f"wrote the results to {path}" in out
    assert path.stat().st_mode & 0o044  # readable by others as a file open() makes (umask 022)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.json"]  # no temporary left


def test_an_error_while_writing_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.json"
    path.write_text("old")

    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(json, "dump", fail)
    assert main(["run", "xor", "--seed", "0", "--json", str(path)]) == 2
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json"]


def test_drawing_leaves_the_callers_matplotlib_backend_and_figures_alone(tmp_path):
    pytest.importorskip("matplotlib")
    # (in a process of its own: the old code switched the backend for good)
    script = f"""
import matplotlib
matplotlib.use("svg")  # stands in for a user's backend (Jupyter's inline, TkAgg)
import matplotlib.pyplot as plt
import bpfast
from bpfast import plots
plt.figure()
net = bpfast.Network([6, 2, 1], seed=1)
plots.symmetry_figure(net, [3.0, 2.0, 1.0], {str(tmp_path / "s.png")!r})
print(matplotlib.get_backend(), plt.get_fignums())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "[1]"]
    assert (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")


def test_a_plot_path_without_a_suffix_gets_a_png_at_that_name(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "weights"
    assert main(["run", "xor", "--seed", "0", "--plot", str(path)]) == 2  # xor: no figure
    assert main(["run", "symmetry", "--seed", "1", "--plot", str(path)]) == 0
    assert path.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]  # no temporary left


def test_a_plot_format_matplotlib_cannot_write_is_refused_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["run", "symmetry", "--seeds", "2", "--plot", str(tmp_path / "fig.xyz")]) == 2
    err = capsys.readouterr()
    assert "cannot write .xyz files" in err.err and ".png" in err.err
    assert err.out == ""  # refused before any run printed its table
    assert list(tmp_path.iterdir()) == []


def test_outputs_are_written_through_symlinks_and_keep_their_permissions(tmp_path, capsys):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert main(["run", "xor", "--seed", "0", "--json", str(link)]) == 0
    assert link.is_symlink()
    assert json.loads(real.read_text())["seeds"] == [0]
    assert real.stat().st_mode & 0o777 == 0o600
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "missing" / "x.json")
    assert main(["run", "xor", "--seed", "0", "--json", str(dangling)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_json_to_a_pipe_or_device_is_written_to_it_not_replaced():
    # `--json /dev/stdout`: the JSON goes down the pipe; the device is not replaced by a file
    # (as root, a rename over /dev/stdout would replace the link for every later process)
    os = __import__("os")
    if not os.path.exists("/dev/stdout"):
        pytest.skip("this system has no /dev/stdout")
    before = os.lstat("/dev/stdout")
    done = subprocess.run([sys.executable, "-m", "bpfast", "run", "xor", "--seed", "0", "--json",
                           "/dev/stdout"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    start = done.stdout.index("{\n")
    record = json.JSONDecoder().raw_decode(done.stdout[start:])[0]
    assert record["seeds"] == [0]
    after = os.lstat("/dev/stdout")
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


def test_too_many_seeds_is_a_one_line_error(capsys):
    assert main(["run", "symmetry", "--seeds", str(10**10)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bpfast: error: a population of 10,000,000,000 networks") and \
        err.count("\n") == 1


def test_a_closed_pipe_ends_the_command_quietly():
    """`bpfast run ... | head -1`: the reader goes away. It goes before the command prints
    anything (the table comes after the runs), so that every write meets the closed pipe; a
    reader that took one line first could leave the rest of a short table in the pipe's buffer,
    and the command would end normally."""
    child = subprocess.Popen([sys.executable, "-m", "bpfast", "run", "xor", "--seeds", "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()
    _, err = child.communicate(timeout=300)
    assert child.returncode == 141, err
    assert err == b""


def test_the_demo_reports_a_solved_run_first():
    out = bpfast().stdout.splitlines()
    assert out[2].startswith("seed ") and "solved in" in out[2] and "not solved" not in out[2]


def test_plots_are_titled_with_the_run(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from bpfast import plots
    titles = []
    real = plots.symmetry_figure
    monkeypatch.setattr(plots, "symmetry_figure",
                        lambda net, errors, path, title=None, format=None: titles.append(title)
                        or real(net, errors, path, title=title, format=format))
    assert main(["run", "symmetry", "--seeds", "2", "--plot", str(tmp_path / "s.png")]) == 0
    best_error = EXPERIMENTS["symmetry"].run(seed=1).result.final_error
    expected = f"bpfast run symmetry: seed 1, the lowest final E of 2 runs (E = {best_error:.3g})"
    assert titles == [expected]


def test_ctrl_c_ends_the_command_in_one_line_with_130(monkeypatch, capsys):
    from bpfast import __main__

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(__main__, "run_experiment", interrupted)
    assert main(["run", "xor", "--seeds", "2"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "bpfast: interrupted"


def test_the_json_names_the_kernels_that_computed_it(tmp_path, capsys):
    import bpfast
    path = tmp_path / "xor.json"
    assert main(["run", "xor", "--seeds", "1", "--json", str(path)]) == 0
    record = json.loads(path.read_text())
    assert record["kernels"] == bpfast.build_info()["simd"]


def test_seeds_help_gives_each_presets_default():
    from bpfast.__main__ import _default_seeds_text
    text = _default_seeds_text()  # e.g. "10; 20 for family-trees-literal, family-trees, tc, ..."
    usual, *others = text.split("; ")
    said = {}
    for part in others:
        n, names = part.split(" for ")
        said.update((name, int(n)) for name in names.split(", "))
    for name, experiment in EXPERIMENTS.items():
        assert said.get(name, int(usual)) == experiment.default_seeds, name
    assert text in " ".join(bpfast("run", "--help").stdout.split()).replace("- ", "-")


def test_figures_refuse_nan_and_other_nets_and_write_the_name_given(tmp_path):
    pytest.importorskip("matplotlib")
    import bpfast
    from bpfast import plots
    net = bpfast.Network([6, 2, 1], seed=1)
    plots.symmetry_figure(net, [3.0, 2.0], tmp_path / "figure")  # no suffix: a PNG at that name
    assert (tmp_path / "figure").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "figure.png").exists()
    net.params[0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite weights"):
        plots.symmetry_figure(net, [1.0], tmp_path / "nan.png")
    with pytest.raises(ValueError, match="max_weight must be"):
        plots.hinton_squares(np.ones((2, 2)), max_weight=0)
    with pytest.raises(ValueError, match="symmetry_figure needs the symmetry net's biases"):
        plots.symmetry_figure(bpfast.Network([6, 2, 1], bias=False), [1.0], tmp_path / "b.png")
    with pytest.raises(ValueError, match="sweeps must be finite"):
        plots.sweeps_histogram([10.0, np.nan], 1, tmp_path / "h.png")
