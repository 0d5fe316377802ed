"""Training sets of the paper's experiments, generated from their rules, never downloaded.

All return float64 arrays of 0/1; ``X`` has one row per case, ``T`` one row of targets per case.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


def _check_bits(name: str, n, low: int, high: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not low <= n <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {n!r}")
    return n


def _all_patterns(n: int) -> np.ndarray:
    return np.array(list(itertools.product((0.0, 1.0), repeat=n)))


def symmetry(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """All 2**n binary patterns, and whether each is a mirror palindrome (Nature Fig. 1).

    Returns
    -------
    X : ndarray of shape (2**n, n)
    T : ndarray of shape (2**n, 1): 1 iff x[i] == x[n-1-i] for every i
    """
    X = _all_patterns(_check_bits("n", n, 1, 20))
    return X, np.all(X == X[:, ::-1], axis=1).astype(np.float64).reshape(-1, 1)


def xor() -> tuple[np.ndarray, np.ndarray]:
    """00 -> 0, 01 -> 1, 10 -> 1, 11 -> 0. X (4, 2), T (4, 1)."""
    X = _all_patterns(2)
    return X, (X.sum(1) % 2).reshape(-1, 1)


def parity(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """All 2**n patterns; the target is 1 iff the number of ones is odd. X (2**n, n), T (2**n, 1)."""
    X = _all_patterns(_check_bits("n", n, 1, 20))
    return X, (X.sum(1) % 2).reshape(-1, 1)


def encoder(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The n one-hot patterns, each its own target (the 8-3-8 encoder). X and T (n, n)."""
    eye = np.eye(_check_bits("n", n, 2, 4096))
    return eye, eye.copy()


def negation() -> tuple[np.ndarray, np.ndarray]:
    """4 input bits, the first a flag: the output is the other three bits, complemented when the
    flag is 1. X (16, 4), T (16, 3)."""
    X = _all_patterns(4)
    flag, rest = X[:, :1], X[:, 1:]
    return X, np.abs(rest - flag)


def addition() -> tuple[np.ndarray, np.ndarray]:
    """Two 2-bit numbers (a1 a0 b1 b0) -> their 3-bit sum (s2 s1 s0). X (16, 4), T (16, 3)."""
    X = _all_patterns(4)
    total = (2 * X[:, 0] + X[:, 1] + 2 * X[:, 2] + X[:, 3]).astype(int)
    return X, np.array([[(s >> 2) & 1, (s >> 1) & 1, s & 1] for s in total], dtype=np.float64)


# ---- family trees (Nature Figs 2-4) -----------------------------------------------------------

RELATIONS = ("father", "mother", "husband", "wife", "son", "daughter", "uncle", "aunt", "brother",
             "sister", "nephew", "niece")
# Person order for the input and output units (and Fig. 4-style plots): English, then Italian.
ENGLISH = ("Christopher", "Andrew", "Arthur", "James", "Charles", "Colin",
           "Penelope", "Christine", "Victoria", "Jennifer", "Margaret", "Charlotte")
ITALIAN_OF = {"Christopher": "Roberto", "Penelope": "Maria", "Andrew": "Pierro",
              "Christine": "Francesca", "Arthur": "Emilio", "Margaret": "Gina", "Victoria": "Lucia",
              "James": "Marco", "Jennifer": "Angela", "Charles": "Tomaso", "Colin": "Alfonso",
              "Charlotte": "Sophia"}
ITALIAN = tuple(ITALIAN_OF[p] for p in ENGLISH)
PEOPLE = ENGLISH + ITALIAN
MALES = frozenset({"Christopher", "Andrew", "Arthur", "James", "Charles", "Colin"} |
                  {ITALIAN_OF[p] for p in ("Christopher", "Andrew", "Arthur", "James", "Charles",
                                           "Colin")})
# The English tree: (husband, wife, children). The Italian one is its image.
ENGLISH_COUPLES = (("Christopher", "Penelope", ("Arthur", "Victoria")),
                   ("Andrew", "Christine", ("James", "Jennifer")),
                   ("Arthur", "Margaret", ()),
                   ("James", "Victoria", ("Colin", "Charlotte")),
                   ("Charles", "Jennifer", ()))


def _facts_of(couples) -> set[tuple[str, str, str]]:
    """Every fact <p1, R, p2> ("p2 is p1's R") of one tree, by the paper's rule."""
    spouse, parents, children = {}, {}, {}
    for husband, wife, kids in couples:
        spouse[husband], spouse[wife] = wife, husband
        children[husband] = children[wife] = tuple(kids)
        for kid in kids:
            parents[kid] = (husband, wife)
    male = lambda p: p in MALES  # noqa: E731
    siblings = {kid: [k for k in children[parents[kid][0]] if k != kid] for kid in parents}
    facts = set()
    for p, (father, mother) in parents.items():
        facts |= {(p, "father", father), (p, "mother", mother)}
        for sib in siblings[p]:
            facts.add((p, "brother" if male(sib) else "sister", sib))
        # uncles and aunts: each sibling of a parent, and that sibling's spouse
        for parent in (father, mother):
            for sib in siblings.get(parent, ()):
                for relative in (sib,) + ((spouse[sib],) if sib in spouse else ()):
                    facts.add((p, "uncle" if male(relative) else "aunt", relative))
                    facts.add((relative, "nephew" if male(p) else "niece", p))
    for p, q in spouse.items():
        facts.add((p, "husband" if male(q) else "wife", q))
    for p, kids in children.items():
        for kid in kids:
            facts.add((p, "son" if male(kid) else "daughter", kid))
    return facts


@dataclass(frozen=True)
class FamilyTrees:
    """The two isomorphic family trees as a training set.

    Attributes
    ----------
    facts : tuple of (person1, relation, person2), sorted: "person2 is person1's relation" (112)
    queries : tuple of (person1, relation), sorted (104): one case each
    X : ndarray of shape (104, 36): person1 one-hot (24 units, PEOPLE order), then relation
        one-hot (12 units, RELATIONS order)
    T : ndarray of shape (104, 24): every right answer's unit on (two for 8 queries)
    """

    facts: tuple
    queries: tuple
    X: np.ndarray
    T: np.ndarray

    def split(self, n_test: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Indices of (training, held-out) queries: `n_test` held out at random by `seed`.
        (The paper held out four; which four it does not say, so every split here is ours.)"""
        n_test = _check_bits("n_test", n_test, 0, len(self.queries) - 1)
        order = np.random.default_rng(seed).permutation(len(self.queries))
        return np.sort(order[n_test:]), np.sort(order[:n_test])

    @staticmethod
    def encode(person: str, relation: str) -> np.ndarray:
        """The 36 input units for "who is `person`'s `relation`?"."""
        if person not in PEOPLE or relation not in RELATIONS:
            raise ValueError(f"unknown person {person!r} or relation {relation!r}")
        x = np.zeros(36)
        x[PEOPLE.index(person)] = 1
        x[24 + RELATIONS.index(relation)] = 1
        return x

    @staticmethod
    def decode(outputs, threshold: float = 0.5) -> list[str]:
        """The people whose output units are above `threshold`."""
        outputs = np.asarray(outputs).reshape(-1)
        if outputs.shape != (24,):
            raise ValueError(f"expected 24 output values, got shape {outputs.shape}")
        return [PEOPLE[i] for i in np.flatnonzero(outputs > threshold)]

    @staticmethod
    def correct(outputs, targets) -> np.ndarray:
        """The paper's test, per case: every right answer's unit above 0.5 and every other unit
        below 0.5. `outputs` and `targets` of shape (n_cases, 24), row for row."""
        outputs, targets = np.asarray(outputs), np.asarray(targets)
        if outputs.shape != targets.shape or outputs.ndim != 2 or outputs.shape[1] != 24:
            raise ValueError(f"outputs {outputs.shape} and targets {targets.shape} must both be "
                             "(n_cases, 24)")
        return np.all((outputs > 0.5) == (targets > 0.5), axis=1)


def family_trees() -> FamilyTrees:
    """The 104 (person, relation) queries of the two family trees, with their answers."""
    italian_couples = tuple((ITALIAN_OF[h], ITALIAN_OF[w], tuple(ITALIAN_OF[k] for k in kids))
                            for h, w, kids in ENGLISH_COUPLES)
    facts = tuple(sorted(_facts_of(ENGLISH_COUPLES) | _facts_of(italian_couples),
                         key=lambda f: (PEOPLE.index(f[0]), RELATIONS.index(f[1]),
                                        PEOPLE.index(f[2]))))
    queries = tuple(dict.fromkeys((p, r) for p, r, _ in facts))
    X = np.array([FamilyTrees.encode(p, r) for p, r in queries])
    T = np.zeros((len(queries), 24))
    index = {q: i for i, q in enumerate(queries)}
    for p, r, q in facts:
        T[index[(p, r)], PEOPLE.index(q)] = 1
    return FamilyTrees(facts=facts, queries=queries, X=X, T=T)
