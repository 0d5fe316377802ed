"""Regenerate docs/reproduction.md: our figures beside the paper's for every experiment.

    python docs/reproduction.py            # run every experiment (~1 min), then write the report
    python docs/reproduction.py --only tc  # run only these experiments, then write the report
    python docs/reproduction.py --report   # only rewrite the report from docs/results/*.json
    python docs/family_trees_sweep.py      # the family-trees sweep it includes (~40 s)

Each experiment runs through the `bpfast run NAME --json docs/results/NAME.json` command (seeds
0..N-1, trained together as one population); the figures are drawn with --plot into docs/. The
symmetry distribution (1,000 seeds) is measured here too: its solve rate, a histogram of the sweeps
(docs/symmetry-sweeps.png) and how many solved nets have the paper's 1 : 2 : 4 magnitudes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import bpfast
from bpfast import plots, symmetry
from bpfast.__main__ import main as bpfast_main
from bpfast.experiments import EXPERIMENTS, FAMILY_TREES_CHANGES

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
# the rest use their preset's default (10; family trees, tc and shift-register 20)
SEEDS = {"symmetry": 1000, "sequences": 100, "tc": 40}
PLOTS = {"symmetry": "symmetry.png", "family-trees": "family-trees.png", "tc": "tc-fields.png"}


def command(name):
    args = ["run", name]
    if name in SEEDS:
        args += ["--seeds", str(SEEDS[name])]
    return args + ["--json", f"docs/results/{name}.json"]


def run_all(names):
    os.makedirs(RESULTS, exist_ok=True)
    for name in names:
        args = command(name)
        args[-1] = os.path.join(RESULTS, f"{name}.json")
        if name in PLOTS:
            args += ["--plot", os.path.join(HERE, PLOTS[name])]
        if bpfast_main(args) != 0:
            raise SystemExit(f"bpfast {' '.join(args)} failed")
    if "symmetry" in names:
        symmetry_distribution()


def symmetry_distribution():
    """1,000 symmetry seeds as one population: sweeps, solve rate, the paper's structure."""
    seeds = range(SEEDS["symmetry"])
    started = time.perf_counter()
    outcomes = EXPERIMENTS["symmetry"].run_seeds(seeds)
    seconds = time.perf_counter() - started
    solved = [o for o in outcomes if o.solved]
    record = {"seeds": len(outcomes), "seconds": round(seconds, 2),
              "bpfast_version": bpfast.__version__, "kernels": bpfast.build_info()["simd"],
              "threads": bpfast.build_info()["openmp_max_threads"],
              "solved": len(solved), "sweeps_when_solved": [o.result.n_sweeps for o in solved],
              "paper_magnitudes": sum(symmetry.has_paper_magnitudes(o.network) for o in solved)}
    with open(os.path.join(RESULTS, "symmetry-distribution.json"), "w") as f:
        json.dump(record, f)
    plots.sweeps_histogram(record["sweeps_when_solved"], len(outcomes) - len(solved),
                           os.path.join(HERE, "symmetry-sweeps.png"),
                           title=f"symmetry 6-2-1, {len(outcomes):,} seeds")


def distribution_lines():
    path = os.path.join(RESULTS, "symmetry-distribution.json")
    if not os.path.exists(path):
        return ["(Run `python docs/reproduction.py` for the 1,000-seed distribution.)"]
    with open(path) as f:
        r = json.load(f)
    sweeps = np.array(r["sweeps_when_solved"])
    q = np.percentile(sweeps, [10, 25, 50, 75, 90])
    share = r["paper_magnitudes"] / r["solved"]
    return [f"Over {r['seeds']:,} seeds (trained as one population in {r['seconds']} s on "
            f"{r['threads']} threads): {r['solved']:,} solved ({r['solved'] / r['seeds']:.1%}); "
            f"sweeps when solved: median {q[2]:g}, quartiles {q[1]:g}-{q[3]:g}, 10th-90th "
            f"percentile {q[0]:g}-{q[4]:g}, range {sweeps.min()}-{sweeps.max()}. "
            f"{r['paper_magnitudes']:,} of the solved nets ({share:.0%}) have the paper's "
            "magnitudes 1 : 2 : 4 (each within 15%).", "",
            "![sweeps to solve, 1,000 seeds](symmetry-sweeps.png)"]


def load(name):
    with open(os.path.join(RESULTS, f"{name}.json")) as f:
        return json.load(f)


def ours(name, record):
    s, runs = record["summary"], record["runs"]
    if "mean_held_out_accuracy" in s:
        n = EXPERIMENTS[name].held_out
        counts = np.bincount([r["held_out_correct"] for r in runs], minlength=n + 1)
        return (f"held out {s['mean_held_out_accuracy']:.0%} correct (runs with " +
                ", ".join(f"{k}/{n}: {counts[k]}" for k in range(n, -1, -1)) +
                f"); training accuracy {s['mean_train_accuracy']:.1%}")
    median = s["median_sweeps_when_solved"]
    solved = [r["sweeps"] for r in runs if r["solved"]]
    span = f", range {min(solved)}–{max(solved)}" if solved else ""
    text = (f"solved {sum(r['solved'] for r in runs)}/{len(runs)}; median sweeps when solved "
            f"{'-' if median is None else f'{median:g}'}{span}")
    if "fraction_delay_line" in s:
        text += f"; a clean delay line in {s['fraction_delay_line']:.0%} of runs"
    return text


def recurrent_sections():
    """T-C, sequence completion and the shift register (PDP ch. 8): weight sharing and
    recurrent nets."""
    tc, seq, shift = load("tc"), load("sequences"), load("shift-register")
    kinds = [r["nearest_kind"] for r in tc["runs"] if r["solved"]]
    solved = [r for r in tc["runs"] if r["solved"]]
    seq_runs = seq["runs"]
    novel = np.bincount([r["held_out_correct"] for r in seq_runs], minlength=6)
    reach = seq["summary"]["fraction_reaching_held_out_target"]
    right = {}
    for r in seq_runs:
        for name in r["held_out_right"]:
            right[name] = right.get(name, 0) + 1
    sweeps = np.array([r["sweeps"] for r in seq_runs])
    shift_runs = shift["runs"]
    return [
        "", "## T-C: one shared receptive field", "", "![receptive fields](tc-fields.png)", "",
        f"`bpfast run tc --seeds {len(tc['runs'])}`: {len(solved)} of {len(tc['runs'])} seeds "
        f"solved (every output within {tc['stop_tol']} of its target) within "
        f"{sum(p['n_sweeps'] for p in tc['schedule']):,} sweeps, median "
        f"{tc['summary']['median_sweeps_when_solved']:g} sweeps. The shared 3x3 field each "
        "solved run learned is drawn above (the top row is our reconstruction of the chapter's "
        "four kinds), and named by the kind it is closest to (|cosine| over rotations and "
        "reflections, centred): " + ", ".join(f"{k} {kinds.count(k)}" for k in
                                              sorted(set(kinds))) + ". The chapter reports the "
        "same four kinds across its runs; we find every one of them.", "",
        "```", EXPERIMENTS["tc"].notes, "```", "",
        "## Sequence completion (PDP Tables 10-11)", "",
        f"`bpfast run sequences --seeds {len(seq_runs)}`: training set (20 sequences) learned "
        f"by {sum(r['train_accuracy'] == 1 for r in seq_runs)} of {len(seq_runs)} seeds, "
        f"in a median of {np.median(sweeps):g} sweeps (range {sweeps.min()}–{sweeps.max()}; "
        "the chapter: about 260 at α 0.9). Novel sequences fully right, runs with " +
        ", ".join(f"{k}/5: {novel[k]}" for k in range(5, -1, -1)) +
        f"; **at least 4 of 5 (the chapter's result) in {reach:.0%} of seeds**. Each novel "
        "sequence, the runs that got it right: " +
        ", ".join(f"{n} {right.get(n, 0)}" for n in bpfast.datasets.NOVEL_SEQUENCES) + ".", "",
        "```", EXPERIMENTS["sequences"].notes, "```", "",
        "## Shift register", "",
        f"`bpfast run shift-register --seeds {len(shift_runs)}`: "
        f"{sum(r['solved'] for r in shift_runs)} of {len(shift_runs)} seeds learn to output "
        "their input two steps late (every output within 0.3), median "
        f"{shift['summary']['median_sweeps_when_solved']:g} sweeps. What they learn: in "
        f"{shift['summary']['fraction_delay_line']:.0%} of runs a clean delay line (each hidden "
        "unit holds one of the last three inputs, |r| > 0.9); the others spread the three bits "
        "over the units (the lag correlations of every run are in "
        "docs/results/shift-register.json). The chapter's own figures for this net are "
        "unverified here: we do not have its exact set-up, so these are our set-up's results "
        "alone.", "", "```", EXPERIMENTS["shift-register"].notes, "```", "",
        "`sequences-timing` (Table 12: six timings of each sequence, 60 hidden units) is not "
        "built: the account of the chapter we work from does not give the rule for the six "
        "timings and we could not check "
        "one, so any preset would be our invention presented as the chapter's."]


def sweep_section():
    path = os.path.join(RESULTS, "family-trees-sweep.json")
    if not os.path.exists(path):
        return ["(Run `python docs/family_trees_sweep.py` for the sweep.)"]
    r = json.load(open(path))
    settings = r["settings"]
    keys = list(r["grid"])
    lines = [f"{r['runs']:,} runs ({len(settings)} settings × {len(r['seeds'])} seeds, then the "
             f"five best again on {len(r['confirm_seeds'])} fresh seeds), trained as populations "
             f"in {r['seconds']} s on {r.get('threads', 1)} thread(s). Grid: " + "; ".join(f"{k} ∈ {v}" for k, v in r["grid"].items()) + ". The "
             "paper's letter: " + ", ".join(f"{k} = {v}" for k, v in r["letter"].items()) + ".",
             "", "Best setting at each distance from the letter (number of values changed), on the "
             f"{len(r['seeds'])} sweep seeds:", "",
             "| changed | " + " | ".join(keys) + " | held out | training |",
             "|---|" + "---|" * len(keys) + "---|---|"]
    for d in range(len(keys) + 1):
        group = [s for s in settings if s["distance_from_letter"] == d]
        if group:
            best = max(group, key=lambda s: np.mean(s["held_out_correct"]))
            lines.append(f"| {d} | " + " | ".join(str(best[k]) for k in keys) +
                         f" | {np.mean(best['held_out_correct']) / 4:.0%} | "
                         f"{best['train_accuracy']:.0%} |")
    lines += ["", "The five best, trained again on fresh seeds (the sweep's ranking flatters its "
              "winners):", "", "| " + " | ".join(keys) + " | held out | 4/4 | 3/4 | 2/4 | 1/4 | "
              "0/4 | training |", "|" + "---|" * (len(keys) + 7)]
    for c in r["confirmed"]:
        counts = np.bincount(c["held_out_correct"], minlength=5)
        lines.append("| " + " | ".join(str(c[k]) for k in keys) +
                     f" | {np.mean(c['held_out_correct']) / 4:.0%} | " +
                     " | ".join(str(counts[i]) for i in (4, 3, 2, 1, 0)) +
                     f" | {c['train_accuracy']:.0%} |")
    every = np.bincount(np.concatenate([s["held_out_correct"] for s in settings]), minlength=5)
    lines += ["", "Held-out correct over every run of the grid: " +
              ", ".join(f"{i}/4: {every[i]}" for i in (4, 3, 2, 1, 0)) + "."]
    return lines


def produced_by():
    """The bpfast versions and kernel variants the results were computed with, as recorded."""
    seen = set()
    for name in sorted(os.listdir(RESULTS)):
        if name.endswith(".json"):
            with open(os.path.join(RESULTS, name)) as f:
                record = json.load(f)
            seen.add((record.get("bpfast_version", "?"), record.get("kernels", "variant not "
                                                                              "recorded")))
    return "; ".join(f"bpfast {version}, {kernels} kernels" for version, kernels in sorted(seen))


def report():
    lines = ["# Reproducing Rumelhart, Hinton & Williams (1986)", "",
             "Generated by `python docs/reproduction.py` from `docs/results/*.json` "
             f"(computed with {produced_by()}; report written with Python "
             f"{platform.python_version()}). "
             "Every figure below is ours beside the paper's; figures the paper's secondary sources "
             "report without verification are marked \"reported\". Each experiment's command is "
             "given; seeds are 0..N-1.", "",
             "| experiment | command | ours | paper |", "|---|---|---|---|"]
    for name in EXPERIMENTS:
        record = load(name)
        paper = "; ".join(f"{k}: {v}" for k, v in record["paper"].items()) or "—"
        lines.append(f"| {name} | `bpfast {' '.join(command(name)[:-2])}` | {ours(name, record)} | "
                     f"{paper} |")
    sym = load("symmetry")
    lines += ["", "## Symmetry", "", "![learned symmetry net](symmetry.png)", "",
              "Stop rule: every output within 0.2 of its target (both of the paper's published nets "
              "meet it). The failures sit on the E = 4 plateau where every pattern reads \"not "
              "symmetric\", as in published replications. Most solved nets have the paper's "
              "structure exactly (mirror weights equal and opposite, magnitudes 1 : 2 : 4, two "
              "hidden units of opposite sign); about a fifth find a second antisymmetric solution "
              "with magnitudes near 1 : 1.55 : 2.07 (tests/test_symmetry.py).",
              f"Solved {sum(r['solved'] for r in sym['runs'])} of {len(sym['runs'])} seeds.",
              ""] + distribution_lines() + [
              "", "## Family trees", "", "![person-encoding units](family-trees.png)", "",
              "The six units fed by the person inputs (one net of the `family-trees` runs), each as "
              "an English row (Christopher, Andrew, Arthur, James, Charles, Colin, Penelope, "
              "Christine, Victoria, Jennifer, Margaret, Charlotte) above the Italian row, as in "
              "Nature Fig. 4.", "",
              "The data are generated by the paper's rule and checked against its counts: 112 "
              "facts, 104 queries, 8 with two answers (tests/test_datasets.py). Held-out accuracy "
              "is averaged over 20 seeds, each holding out its own random 4 queries: the splits "
              "are ours; the paper does not say which four it held out.", "",
              "Read literally (`family-trees-literal`), the recipe learns nothing in 1,500 sweeps: "
              "every output sinks to about 0.2, the edge of the dead zone. `family-trees` changes "
              "three values:", "", "```", FAMILY_TREES_CHANGES, "```", "",
              "### Sweeping the recipe", ""] + sweep_section() + [
              "", "Conclusion: no setting near the letter matches the paper's 4/4 and 3/4 on "
              "average. Held out 4 at a time, about half the queries are answered right by the "
              "best settings; runs with 4/4 or 3/4 occur, so the paper's two runs are consistent "
              "with lucky splits or seeds, but not with a typical run of any setting we tried."]
    lines += recurrent_sections()
    with open(os.path.join(HERE, "reproduction.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote docs/reproduction.md")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only rewrite the report")
    parser.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), metavar="NAME",
                        help="run only these experiments")
    options = parser.parse_args()
    if not options.report:
        run_all(options.only or list(EXPERIMENTS))
    report()
