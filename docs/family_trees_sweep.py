"""Sweep the family-trees recipe: which settings come closest to the paper's held-out 4/4 and 3/4
while staying close to its letter? Every run of the grid is a member of a bpfast.Population (one
per value of the two settings that are fit arguments, decay_biases and loss).

    python docs/family_trees_sweep.py [--seeds 8] [--out docs/results/family-trees-sweep.json]

Grid: initial range U(±r), eps after sweep 20, weight decay per sweep, whether biases decay, and
the dead-zone error or the plain one; every setting is trained from `--seeds` seeds, seed s holding
out its own random 4 queries (the same splits for every setting). The first 20 sweeps are always
eps 0.005, alpha 0.5, then alpha 0.9, 1,500 sweeps in all, as in the paper. A setting's distance
from the letter is the number of its values that differ from the paper's (r 0.3, eps 0.01, decay
0.2%, biases decayed, dead zone).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

import bpfast
from bpfast import Layer, Phase, datasets

LETTER = {"init_range": 0.3, "lr": 0.01, "weight_decay": 0.002, "decay_biases": True,
          "loss": "dead_zone"}
GRID = {"init_range": [0.3, 0.5, 1.0, 2.0], "lr": [0.01, 0.02, 0.05, 0.1],
        "weight_decay": [0.002, 0.0005, 0.0002, 0.0], "decay_biases": [True, False],
        "loss": ["dead_zone", "sse"]}


def train(settings, seeds, trees):
    """Every (setting, seed) pair as one member of a population, seed s holding out its own 4
    queries (case weight 0); the settings share decay_biases and loss (fit arguments), the rest
    are per member. Returns [(training accuracy, held-out correct)] per pair, settings outer."""
    pairs = [(setting, seed) for setting in settings for seed in seeds]
    splits = {seed: trees.split(4, seed=seed) for seed in seeds}
    weights = np.zeros((len(pairs), len(trees.X)))
    for i, (_, seed) in enumerate(pairs):
        weights[i, splits[seed][0]] = 1
    pop = bpfast.Population(
        inputs={"person": 24, "relation": 12},
        layers=[Layer("person_code", 6, ["person"]), Layer("relation_code", 6, ["relation"]),
                Layer("central", 12, ["person_code", "relation_code"]),
                Layer("decode", 6, ["central"]), Layer("output", 24, ["decode"])],
        seeds=[seed for _, seed in pairs], init_range=[s["init_range"] for s, _ in pairs])
    schedules = [[Phase(20, lr=0.005, momentum=0.5, weight_decay=s["weight_decay"]),
                  Phase(1480, lr=s["lr"], momentum=0.9, weight_decay=s["weight_decay"])]
                 for s, _ in pairs]
    pop.fit(trees.X, trees.T, schedule=schedules, sample_weight=weights,
            loss=settings[0]["loss"], decay_biases=settings[0]["decay_biases"])
    outputs = pop.predict(trees.X)
    results = []
    for i, (_, seed) in enumerate(pairs):
        train_rows, test_rows = splits[seed]
        results.append((float(trees.correct(outputs[i, train_rows], trees.T[train_rows]).mean()),
                        int(trees.correct(outputs[i, test_rows], trees.T[test_rows]).sum())))
    return results


def train_grid(settings, seeds, trees):
    """train() for settings that may differ in decay_biases and loss: one population each."""
    results = {}
    for key in {(s["decay_biases"], s["loss"]) for s in settings}:
        group = [s for s in settings if (s["decay_biases"], s["loss"]) == key]
        runs = train(group, seeds, trees)
        for k, setting in enumerate(group):
            results[id(setting)] = runs[k * len(seeds):(k + 1) * len(seeds)]
    return [results[id(setting)] for setting in settings]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8,
                        help="seeds per setting, each holding out its own 4 queries (default 8)")
    parser.add_argument("--confirm-seeds", type=int, default=40,
                        help="fresh seeds for re-testing the five best settings")
    parser.add_argument("--out", default="docs/results/family-trees-sweep.json",
                        help="where to write the results (JSON)")
    args = parser.parse_args()
    trees = datasets.family_trees()
    started = time.perf_counter()
    settings = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    results = []
    for setting, runs in zip(settings, train_grid(settings, range(args.seeds), trees)):
        results.append({**setting,
                        "distance_from_letter": sum(setting[k] != LETTER[k] for k in LETTER),
                        "train_accuracy": float(np.mean([r[0] for r in runs])),
                        "held_out_correct": [r[1] for r in runs]})
    # The best of 256 settings on 8 seeds each is flattered by chance (the winner's curse): the five
    # best are trained again on fresh seeds (1000, 1001, ...), splits included, for fair figures.
    best = sorted(results, key=lambda r: -np.mean(r["held_out_correct"]))[:5]
    fresh = range(1000, 1000 + args.confirm_seeds)
    confirmed = []
    best_settings = [{k: r[k] for k in GRID} for r in best]
    for r, setting, runs in zip(best, best_settings, train_grid(best_settings, fresh, trees)):
        confirmed.append({**setting, "distance_from_letter": r["distance_from_letter"],
                          "train_accuracy": float(np.mean([x[0] for x in runs])),
                          "held_out_correct": [x[1] for x in runs]})
    record = {"seeds": list(range(args.seeds)), "confirm_seeds": list(fresh), "grid": GRID,
              "letter": LETTER, "runs": len(results) * args.seeds + 5 * len(fresh),
              "seconds": round(time.perf_counter() - started, 1),
              "threads": bpfast.build_info()["openmp_max_threads"],
              "bpfast_version": bpfast.__version__, "kernels": bpfast.build_info()["simd"],
              "settings": results, "confirmed": confirmed}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print(f"{record['runs']} runs in {record['seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
