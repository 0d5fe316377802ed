"""Training sets of the paper's experiments, generated, never downloaded."""

from __future__ import annotations

import itertools

import numpy as np


def symmetry(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """All 2**n binary patterns, and whether each is a mirror palindrome (Nature Fig. 1).

    Returns
    -------
    X : ndarray of shape (2**n, n), float64, of 0/1
    T : ndarray of shape (2**n, 1), float64: 1 iff x[i] == x[n-1-i] for every i
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 20:
        raise ValueError(f"n must be an integer from 1 to 20, got {n!r}")
    X = np.array(list(itertools.product((0.0, 1.0), repeat=n)))
    T = np.all(X == X[:, ::-1], axis=1).astype(np.float64).reshape(-1, 1)
    return X, T
