"""Sweep the family-trees recipe: which settings come closest to the paper's held-out 4/4 and 3/4
while staying close to its letter?

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


def train(setting, seed, trees):
    train_rows, test_rows = trees.split(4, seed=seed)
    net = bpfast.Network(
        inputs={"person": 24, "relation": 12},
        layers=[Layer("person_code", 6, ["person"]), Layer("relation_code", 6, ["relation"]),
                Layer("central", 12, ["person_code", "relation_code"]),
                Layer("decode", 6, ["central"]), Layer("output", 24, ["decode"])],
        seed=seed, init_range=setting["init_range"])
    decay = setting["weight_decay"]
    net.fit(trees.X[train_rows], trees.T[train_rows], loss=setting["loss"],
            decay_biases=setting["decay_biases"], n_threads=1,
            schedule=[Phase(20, lr=0.005, momentum=0.5, weight_decay=decay),
                      Phase(1480, lr=setting["lr"], momentum=0.9, weight_decay=decay)])
    train_acc = trees.correct(net.predict(trees.X[train_rows]), trees.T[train_rows]).mean()
    held_out = int(trees.correct(net.predict(trees.X[test_rows]), trees.T[test_rows]).sum())
    return float(train_acc), held_out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--confirm-seeds", type=int, default=40,
                        help="fresh seeds for re-testing the five best settings")
    parser.add_argument("--out", default="docs/results/family-trees-sweep.json")
    args = parser.parse_args()
    trees = datasets.family_trees()
    started = time.perf_counter()
    results = []
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(GRID, values))
        runs = [train(setting, seed, trees) for seed in range(args.seeds)]
        results.append({**setting,
                        "distance_from_letter": sum(setting[k] != LETTER[k] for k in LETTER),
                        "train_accuracy": float(np.mean([r[0] for r in runs])),
                        "held_out_correct": [r[1] for r in runs]})
    # The best of 256 settings on 8 seeds each is flattered by chance (the winner's curse): the five
    # best are trained again on fresh seeds (1000, 1001, ...), splits included, for fair figures.
    best = sorted(results, key=lambda r: -np.mean(r["held_out_correct"]))[:5]
    fresh = range(1000, 1000 + args.confirm_seeds)
    confirmed = []
    for r in best:
        setting = {k: r[k] for k in GRID}
        runs = [train(setting, seed, trees) for seed in fresh]
        confirmed.append({**setting, "distance_from_letter": r["distance_from_letter"],
                          "train_accuracy": float(np.mean([x[0] for x in runs])),
                          "held_out_correct": [x[1] for x in runs]})
    record = {"seeds": list(range(args.seeds)), "confirm_seeds": list(fresh), "grid": GRID,
              "letter": LETTER, "runs": len(results) * args.seeds + 5 * len(fresh),
              "seconds": round(time.perf_counter() - started, 1),
              "bpfast_version": bpfast.__version__, "settings": results, "confirmed": confirmed}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print(f"{record['runs']} runs in {record['seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
