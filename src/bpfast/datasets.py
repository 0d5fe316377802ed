"""Training sets of the paper's experiments, generated from their rules, never downloaded.

All return float64 arrays of 0/1; ``X`` has one row per case, ``T`` one row of targets per case.
"""

from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass

import numpy as np

from ._validation import check_int


def _check_bits(name: str, n, low: int, high: int) -> int:
    """n as an int (any integer type, NumPy's too, as the rest of the API takes) in [low, high]."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not low <= int(n) <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {n!r}")
    return int(n)


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
        if seed is not None:  # (None: fresh entropy, as NumPy takes it)
            seed = check_int("seed", seed, low=0)
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


# ---- T-C (PDP ch. 8): one shared receptive field ----------------------------------------------

# The two letters as 5 cells of a 3x3 block, upright (the chapter's figure): a T (a bar and its
# stem) and a C (a bar with two short tips).
TC_LETTERS = {"T": np.array([[1, 1, 1], [0, 1, 0], [0, 1, 0]], dtype=np.float64),
              "C": np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=np.float64)}


@dataclass(frozen=True)
class TC:
    """The T-C problem: every T and C, in 4 orientations, at every place of a `side` x `side`
    retina that wraps around (a torus, so that every place is alike: the chapter does not say how
    it handled the edges). X (n, side**2) the retinas row by row, T (n, 1): 1 for a T, 0 for a C.
    `fields[j]` maps retina cells to the 9 cells (0..8, row by row) of hidden unit j's 3x3
    window, -1 outside it: one window at every place, as a Tie index (bpfast.Tie)."""

    side: int
    X: np.ndarray
    T: np.ndarray
    fields: np.ndarray
    letter: tuple      # "T" or "C", per case
    rotation: tuple    # quarter turns, per case
    place: tuple       # (row, column) of the block's corner, per case


def tc(side: int = 6) -> TC:
    """The T-C training set on a `side` x `side` torus (default 6: 36 places, 288 cases)."""
    side = _check_bits("side", side, 3, 64)
    places = [(r, c) for r in range(side) for c in range(side)]

    def cells(r, c):  # the retina cells of the 3x3 block whose corner is at (r, c)
        return [((r + dr) % side) * side + (c + dc) % side for dr in range(3) for dc in range(3)]

    rows, targets, letters, rotations, where = [], [], [], [], []
    for name in ("T", "C"):
        for k in range(4):
            block = np.rot90(TC_LETTERS[name], k).ravel()
            for r, c in places:
                retina = np.zeros(side * side)
                retina[cells(r, c)] = block
                rows.append(retina)
                targets.append(1.0 if name == "T" else 0.0)
                letters.append(name)
                rotations.append(k)
                where.append((r, c))
    fields = -np.ones((len(places), side * side), dtype=np.int64)
    for j, (r, c) in enumerate(places):
        fields[j, cells(r, c)] = np.arange(9)
    return TC(side, np.array(rows), np.array(targets).reshape(-1, 1), fields, tuple(letters),
              tuple(rotations), tuple(where))


# ---- sequence completion (PDP ch. 8, Tables 10 and 11) ----------------------------------------

SEQUENCE_LETTERS = "ABCDE"
# Each letter stands for a pair of digits (PDP ch. 8, sequence completion).
SEQUENCE_PAIRS = {"A": "12", "B": "23", "C": "31", "D": "21", "E": "13"}
# The five sequences the chapter holds out (Table 11).
NOVEL_SEQUENCES = ("AD1221", "BE2313", "CA3112", "DB2123", "EC1331")


@dataclass(frozen=True)
class Sequences:
    """The 25 sequences ``L1 L2 pair(L1) pair(L2)`` as a recurrent net's data, 6 time steps: the
    letters come in (one-hot over A-E) at steps 1 and 2, nothing after; the digits are the
    targets (one-hot over 1-3) of steps 3-6, and steps 1-2 have no target (NaN), as in Table 11
    where the first two outputs are untrained. X (25, 6, 5), T (25, 6, 3)."""

    names: tuple  # "AD1221", ...
    X: np.ndarray
    T: np.ndarray

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the 20 training sequences and of the chapter's 5 novel ones."""
        novel = np.array([self.names.index(n) for n in NOVEL_SEQUENCES])
        return np.setdiff1d(np.arange(len(self.names)), novel), novel

    @staticmethod
    def correct(outputs, targets) -> np.ndarray:
        """Per sequence: every trained step right, i.e. its target digit's unit above 0.5 and
        the other two below (the test the family trees use)."""
        outputs, targets = np.asarray(outputs), np.asarray(targets)
        if outputs.shape != targets.shape or outputs.ndim != 3 or outputs.shape[1:] != (6, 3):
            raise ValueError(f"outputs {outputs.shape} and targets {targets.shape} must both be "
                             f"(n_sequences, 6, 3), sequence for sequence")
        trained = ~np.isnan(targets)
        right = (outputs > 0.5) == (targets > 0.5)
        return np.all(right | ~trained, axis=(1, 2))


def sequences() -> Sequences:
    """PDP Table 10's 25 sequences (the rule in :class:`Sequences`), in letter order: AA1212,
    AB1223, ..."""
    names, X, T = [], [], []
    for a in SEQUENCE_LETTERS:
        for b in SEQUENCE_LETTERS:
            digits = SEQUENCE_PAIRS[a] + SEQUENCE_PAIRS[b]
            names.append(a + b + digits)
            x = np.zeros((6, 5))
            x[0, SEQUENCE_LETTERS.index(a)] = 1
            x[1, SEQUENCE_LETTERS.index(b)] = 1
            t = np.full((6, 3), np.nan)
            for step, d in enumerate(digits, start=2):
                t[step] = np.eye(3)[int(d) - 1]
            X.append(x)
            T.append(t)
    return Sequences(tuple(names), np.array(X), np.array(T))


def shift_register(n_steps: int = 6, delay: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Every binary input sequence of `n_steps` bits, one bit per step, and as its target the
    input `delay` steps earlier (no target, NaN, for the first `delay` steps): a recurrent net
    must hold each bit for `delay` steps, a shift register. X (2**n_steps, n_steps, 1), T alike."""
    n_steps = _check_bits("n_steps", n_steps, 2, 16)
    delay = _check_bits("delay", delay, 1, n_steps - 1)
    X = _all_patterns(n_steps)[:, :, None]
    T = np.full_like(X, np.nan)
    T[:, delay:] = X[:, :-delay]
    return X, T
