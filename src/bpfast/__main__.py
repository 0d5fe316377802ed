"""The `bpfast` command (also `python -m bpfast`).

    bpfast                      the symmetry demo with the paper's settings
    bpfast list                 the experiments, one line each
    bpfast run EXPERIMENT [--seeds N | --seed S] [--threads T] [--plot FILE.png] [--json FILE]
    bpfast --version

Output cut short by a closed pipe (`bpfast run symmetry | head`) ends the command quietly, with
exit status 141 (as a process killed by SIGPIPE).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import stat
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

from . import __version__, build_info, symmetry
from .experiments import EXPERIMENTS
from .io import _new_file_mode, _resolve_target

MAX_DEMO_SEEDS = 10


def _row(values) -> str:
    return " ".join(f"{v:+6.1f}" for v in values)


def demo() -> int:
    print("Symmetry (Rumelhart, Hinton & Williams 1986, Fig. 1): 6-2-1 logistic net, 64 patterns,")
    print("eps=0.1, alpha=0.9, weights U(+-0.3), full-batch sweeps, stop when every output is "
          "within 0.2 of its target.")
    # About one seed in ten sits on the E = 4 plateau (the paper's replications agree); the default
    # seed 0 is one of them. The demo trains seeds in order until one solves, reports that run
    # first, then the seeds before it that did not solve.
    unsolved = []
    for seed in range(MAX_DEMO_SEEDS):
        started = time.perf_counter()
        net, result = symmetry.run(seed=seed)
        elapsed = time.perf_counter() - started
        if result.solved:
            break
        status = f"seed {seed}: not solved in {result.n_sweeps} sweeps, final E = {result.final_error:.3f}"
        if abs(result.final_error - 4.0) < 0.1:
            status += " (on the E = 4 plateau: every pattern reads 'not symmetric')"
        unsolved.append(status)
    outcome = (f"solved in {result.n_sweeps} sweeps" if result.solved
               else f"not solved in {result.n_sweeps} sweeps")
    print(f"seed {seed}: {outcome}; final E = {result.final_error:.3f}; "
          f"{elapsed * 1e6 / max(result.n_sweeps, 1):.1f} us per sweep ({elapsed:.2f} s); "
          f"every output on the right side of 0.5: {symmetry.right_side_of_half(net)}")
    for line in unsolved:
        print(f"  before it, {line}")
    s = symmetry.describe_solution(net)
    print(f"paper:  solved in {symmetry.PAPER_SWEEPS} sweeps (one run); replications: ~90% of seeds "
          "solve, median ~2,200-2,700 sweeps")
    print("                     input weights (x1..x6)              bias  -> output")
    for h in range(2):
        print(f"ours   hidden {h + 1}: {_row(s.hidden_weights[h])}   {s.hidden_bias[h]:+5.1f}  "
              f"{s.output_weights[h]:+6.1f}")
    paper = np.array(symmetry.PAPER_HIDDEN_WEIGHTS)
    for h, sign in enumerate((1, -1)):
        print(f"paper  hidden {h + 1}: {_row(sign * paper)}   {symmetry.PAPER_HIDDEN_BIAS:+5.1f}  "
              f"{symmetry.PAPER_HIDDEN_TO_OUTPUT:+6.1f}")
    print(f"output bias: ours {s.output_bias:+.1f}, paper {symmetry.PAPER_OUTPUT_BIAS:+.1f}; "
          f"sorted magnitude ratios: ours 1 : {s.magnitude_ratios[0, 1]:.2f} : "
          f"{s.magnitude_ratios[0, 2]:.2f}, paper 1 : 2 : 4")
    return 0


def list_experiments() -> int:
    width = max(len(name) for name in EXPERIMENTS)
    for name, e in EXPERIMENTS.items():
        print(f"{name:<{width}}  {e.summary}")
    return 0


def run_experiment(args) -> int:
    experiment = EXPERIMENTS[args.experiment]
    seeds = ([args.seed] if args.seed is not None
             else range(args.seeds or experiment.default_seeds))
    n_seeds = len(seeds)
    started = time.perf_counter()
    # every seed at once, as one population (a progress bar on a terminal)
    outcomes = experiment.run_seeds(seeds, n_threads=args.threads,
                                    progress=sys.stderr.isatty())
    elapsed = time.perf_counter() - started

    runs = [{"seed": o.seed, "solved": o.solved,
             "sweeps": o.result.n_sweeps, "final_error": o.result.final_error, **o.measures}
            for o in outcomes]
    solved = [r["sweeps"] for r in runs if r["solved"]]
    summary: dict[str, Any] = {"runs": len(runs), "seconds": round(elapsed, 3)}
    if experiment.stop_tol is not None:
        summary["solved_fraction"] = len(solved) / len(runs)
        summary["median_sweeps_when_solved"] = statistics.median(solved) if solved else None
    if experiment.held_out:
        summary["mean_train_accuracy"] = float(np.mean([r["train_accuracy"] for r in runs]))
        summary["mean_held_out_accuracy"] = float(np.mean([r["held_out_correct"] /
                                                           experiment.held_out for r in runs]))
        if experiment.held_out_target:
            summary["fraction_reaching_held_out_target"] = float(np.mean(
                [r["held_out_correct"] >= experiment.held_out_target for r in runs]))
    flags = [key for key, value in (outcomes[0].measures.items() if outcomes else ())
             if isinstance(value, bool)]
    for key in flags:  # a yes/no the task measures (shift register: a clean delay line)
        summary[f"fraction_{key}"] = float(np.mean([r[key] for r in runs]))

    print(f"{experiment.name}: {experiment.summary}")
    if experiment.held_out:
        print(f"{n_seeds} run{'s' * (n_seeds > 1)}, {experiment.held_out} cases held out: "
              f"{experiment.split_note}")
        print(f"{'seed':>4}  {'final E':>8}  {'train acc':>9}  {'held out':>8}")
        for r in runs:
            print(f"{r['seed']:>4}  {r['final_error']:>8.3f}  {r['train_accuracy']:>9.1%}  "
                  f"{r['held_out_correct']:>6}/{experiment.held_out}")
        print(f"mean: train accuracy {summary['mean_train_accuracy']:.1%}, held-out "
              f"{summary['mean_held_out_accuracy']:.1%} correct")
        if experiment.held_out_target:
            print(f"runs with at least {experiment.held_out_target}/{experiment.held_out} "
                  f"held out right: {summary['fraction_reaching_held_out_target']:.0%}")
    else:
        print(f"{'seed':>4}  {'sweeps to solve':>15}  {'final E':>8}")
        for r in runs:
            sweeps = str(r["sweeps"]) if r["solved"] else "not solved"
            print(f"{r['seed']:>4}  {sweeps:>15}  {r['final_error']:>8.3f}")
        median = summary["median_sweeps_when_solved"]
        print(f"solved {len(solved)}/{len(runs)} (every output within {experiment.stop_tol} of its "
              f"target within {experiment.n_sweeps} sweeps); median sweeps when solved: "
              f"{'-' if median is None else f'{median:g}'}")
    for key in flags:
        print(f"runs with {key.replace('_', ' ')}: {summary[f'fraction_{key}']:.0%}")
    if experiment.name == "tc":
        kinds = [r["nearest_kind"] for r in runs if r["solved"]]
        print("receptive fields of the solved runs, by nearest kind: " + (", ".join(
            f"{k} {kinds.count(k)}" for k in sorted(set(kinds))) or "-"))
    for figure, text in experiment.paper.items():
        print(f"paper, {figure}: {text}")
    if experiment.notes:
        print(experiment.notes)
    print(f"({elapsed:.1f} s)")

    if args.json:
        record = {"experiment": experiment.name, "summary_line": experiment.summary,
                  "bpfast_version": __version__, "kernels": build_info()["simd"],
                  "seeds": list(seeds),
                  "schedule": [vars(p) for p in experiment.schedule], "loss": experiment.loss,
                  "stop_tol": experiment.stop_tol, "paper": experiment.paper,
                  "runs": runs, "summary": summary}
        if experiment.notes:
            record["notes"] = experiment.notes
        with _replacing(args.json) as temporary, open(temporary, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        print(f"wrote the results to {args.json}")
    if args.plot:
        from . import plots
        best = min(outcomes, key=lambda o: o.result.final_error)
        if experiment.name == "symmetry":  # its error curve: the same run again, alone
            best = experiment.run(seed=best.seed, n_threads=args.threads)
        title = (f"bpfast run {experiment.name}: seed {best.seed}"
                 + (f", the lowest final E of {n_seeds} runs" if n_seeds > 1 else "")
                 + f" (E = {best.result.final_error:.3g})")
        # the format named, not guessed from the temporary file's name (which matplotlib would
        # extend by .png where the path has no suffix, leaving the named file empty)
        fmt = plot_format(args.plot)
        with _replacing(args.plot) as temporary:
            if experiment.name == "symmetry":
                plots.symmetry_figure(best.network, best.result.errors, temporary, title=title,
                                      format=fmt)
            elif experiment.name == "tc":
                from .experiments import TC_KINDS
                shown = [o for o in outcomes if o.solved] or outcomes
                plots.tc_figure(TC_KINDS, [np.array(o.measures["field"]) for o in shown],
                                [f"seed {o.seed}: {o.measures['nearest_kind']}" for o in shown],
                                temporary, title=f"bpfast run tc: the shared receptive field of "
                                                 f"{len(shown)} runs", format=fmt)
            else:
                plots.family_trees_figure(best.network, temporary, title=title, format=fmt)
        print(f"wrote the figure to {args.plot}")
    return 0


class _replacing:
    """Where to write `path`, put in place once written. A regular file, or none yet (symlinks
    followed, as Network.save does): a temporary file beside it that replaces it only once
    completely written, with the permissions it had, so an error or Ctrl-C never leaves a
    half-written file (or none where there was one). A terminal, pipe or other device
    (`--json /dev/stdout`): `path` itself, written as it goes."""

    def __init__(self, path):
        self.path = path
        self.stream = _is_stream(path)
        if not self.stream:
            self.target, existing = _resolve_target(path)
            self.mode = stat.S_IMODE(existing.st_mode) if existing else _new_file_mode()

    def __enter__(self) -> str:
        if self.stream:
            return self.path
        fd, self.temporary = tempfile.mkstemp(dir=os.path.dirname(self.target), prefix=".bpfast-",
                                              suffix=os.path.splitext(self.target)[1])
        os.close(fd)
        return self.temporary

    def __exit__(self, kind, value, traceback):
        if self.stream:
            return False
        if kind is None:
            os.chmod(self.temporary, self.mode)
            os.replace(self.temporary, self.target)
        else:
            os.unlink(self.temporary)
        return False


def _is_stream(path: str) -> bool:
    """Whether `path` names (through any links) something other than a file or directory."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_writable(option: str, path: str) -> None:
    """Refuse, before any training, an output path that could not be written."""
    if not path:
        raise CommandError(f"{option} needs a file name")
    if path == "-":  # not a file named "-" (other tools read it as stdout)
        raise CommandError(f"{option} -: give a file name ({option} /dev/stdout writes to "
                           "the standard output)")
    if path.endswith(("/", os.sep)):  # realpath below would drop the slash
        raise CommandError(f"{option} {path}: names a directory; give a file name")
    if os.path.isdir(path):
        raise CommandError(f"{option} {path}: is a directory; give a file name")
    if _is_stream(path):
        if not os.access(path, os.W_OK):
            raise CommandError(f"{option} {path}: cannot write to it")
        return
    folder = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"{option} {path}: the directory {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {path}: cannot write in {folder}")


def plot_format(path: str) -> str:
    """The figure format --plot writes: its file's suffix, as matplotlib reads it, png if none."""
    return os.path.splitext(path)[1][1:].lower() or "png"


def check_plot_format(path: str) -> None:
    """Refuse, before any training, a --plot file whose format matplotlib cannot write."""
    from matplotlib.backend_bases import FigureCanvasBase
    formats = FigureCanvasBase.get_supported_filetypes()
    if plot_format(path) not in formats:
        raise CommandError(f"--plot {path}: matplotlib cannot write .{plot_format(path)} "
                           f"files; use one of {', '.join('.' + f for f in sorted(formats))}")


def has_figure(experiment) -> bool:
    return experiment.name in ("symmetry", "tc") or experiment.name.startswith("family-trees")


class CommandError(Exception):
    """A mistake in the command line: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CommandError(message)


def _default_seeds_text() -> str:
    """Each preset's default number of seeds: the usual one, then the presets that differ."""
    defaults = [e.default_seeds for e in EXPERIMENTS.values()]
    usual = max(set(defaults), key=defaults.count)
    others = sorted(set(defaults) - {usual})
    return "; ".join([str(usual)] + [f"{n} for " + ", ".join(
        name for name, e in EXPERIMENTS.items() if e.default_seeds == n) for n in others])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if sys.stdout is None:  # started with stdout closed (`>&-`): print() would drop everything
        print("bpfast: error: the standard output is closed; redirect it to a file or "
              "/dev/null", file=sys.stderr)
        return 2
    parser = Parser(prog="bpfast", allow_abbrev=False,
                    description="Back-propagation experiments from Rumelhart, Hinton & Williams "
                    "(1986). With no command: the symmetry demo.")
    parser.add_argument("--version", action="version", version=f"bpfast {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("list", help="the experiments, one line each", allow_abbrev=False)
    run = commands.add_parser("run", help="run an experiment over several seeds",
                              allow_abbrev=False)
    run.add_argument("experiment", metavar="EXPERIMENT",
                     help="one of: " + ", ".join(EXPERIMENTS) + " (`bpfast list` says what "
                          "each is)")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=int, metavar="N",
                       help=f"runs, one per seed 0..N-1 (default: {_default_seeds_text()})")
    which.add_argument("--seed", type=int, metavar="S", help="one run, with seed S")
    run.add_argument("--threads", type=int,
                     help="threads per run (default: bpfast's choice, within the cores and any "
                          "OMP_NUM_THREADS or threadpoolctl limit)")
    run.add_argument("--plot", metavar="FILE.png", help="draw the learned weights")
    run.add_argument("--json", metavar="FILE", help="write the results as JSON")
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            return demo()
        if args.command == "list":
            return list_experiments()
        if args.experiment not in EXPERIMENTS:
            close = difflib.get_close_matches(args.experiment, EXPERIMENTS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CommandError(f"unknown experiment {args.experiment!r}{hint} `bpfast list` "
                               "shows them")
        if args.seeds is not None and args.seeds < 1:
            raise CommandError("--seeds must be at least 1")
        if args.seed is not None and args.seed < 0:
            raise CommandError("--seed must be 0 or more")
        for option, path in (("--json", args.json), ("--plot", args.plot)):
            if path is not None:
                check_writable(option, path)
        if args.plot:
            if not has_figure(EXPERIMENTS[args.experiment]):
                raise CommandError(f"--plot has no figure for {args.experiment}; it draws "
                                   "symmetry, family trees and tc")
            from . import plots
            plots._new_figure()  # fail now, not after the runs, if matplotlib is missing
            check_plot_format(args.plot)
        return run_experiment(args)
    except (CommandError, ImportError, ValueError, TypeError, OSError, MemoryError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _closed_pipe()
        print(f"bpfast: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (130: as a shell reports it)
        print("\nbpfast: interrupted", file=sys.stderr)
        return 130


def _closed_pipe() -> int:
    """The reader of stdout went away (`| head`): stop quietly. stdout is pointed at /dev/null so
    that the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


if __name__ == "__main__":
    sys.exit(main())
