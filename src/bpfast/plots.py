"""Hinton diagrams of learned weights (needs matplotlib: pip install 'bpfast[plot]').

A Hinton diagram draws each weight as a square whose area is proportional to its size, white for
positive and black for negative, on a grey ground. :func:`hinton_squares` computes the squares
(testable without drawing); :func:`hinton` draws them. Nothing else in bpfast imports this module.
The figure functions write to `path` (a file name or a binary file) in `format`, or by default the
format matplotlib's savefig reads from the name's suffix (PNG for a name without one, written at
that name).
"""

from __future__ import annotations

import os

import numpy as np


def hinton_squares(W, max_weight: float | None = None):
    """The squares of a Hinton diagram of the 2-D array `W`.

    Returns a list of (row, col, side, color) with side = sqrt(|w| / max_weight) (so area ∝ |w|),
    color "white" for w > 0 and "black" for w < 0; zero weights get no square.
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D, got shape {W.shape}")
    if not np.isfinite(W).all():  # one NaN would make every square's size NaN: an empty figure
        raise ValueError("W has NaN or infinite weights; a Hinton diagram cannot show them")
    if max_weight is not None and not (np.isfinite(max_weight) and max_weight > 0):
        raise ValueError(f"max_weight must be a finite number > 0, got {max_weight!r}")
    scale = max_weight if max_weight is not None else (np.abs(W).max() or 1.0)
    return [(i, j, float(np.sqrt(min(abs(w) / scale, 1.0))), "white" if w > 0 else "black")
            for (i, j), w in np.ndenumerate(W) if w != 0]


def _save(fig, path, format: str | None) -> None:
    """fig to `path` itself: a name without a suffix is a PNG (savefig would append ".png")."""
    if format is None and isinstance(path, (str, os.PathLike)) and \
            not os.path.splitext(os.fsdecode(path))[1]:
        format = "png"
    fig.savefig(path, dpi=120, format=format)


def _new_figure(**options):
    """A matplotlib Figure of its own, outside pyplot: drawing one neither needs a display nor
    changes the caller's backend or open figures (pyplot with the Agg backend switched a Jupyter
    session's backend for good)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'bpfast[plot]'") from None
    return Figure(**options)


def hinton(ax, W, max_weight: float | None = None, title: str | None = None):
    """Draw the Hinton diagram of `W` on the matplotlib axes `ax` (row 0 at the top)."""
    from matplotlib.patches import Rectangle
    W = np.asarray(W)
    ax.set_facecolor("gray")
    for i, j, side, color in hinton_squares(W, max_weight):
        ax.add_patch(Rectangle((j - side / 2, i - side / 2), side, side, facecolor=color,
                               edgecolor=color))
    ax.set_xlim(-0.5, W.shape[1] - 0.5)
    ax.set_ylim(W.shape[0] - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def symmetry_figure(net, errors, path, title: str | None = None,
                    format: str | None = None) -> None:
    """Nature Fig. 1 style: each hidden unit's 6 input weights and bias, the hidden-to-output
    weights and output bias, and the error curve."""
    from .symmetry import check_symmetry_net
    check_symmetry_net(net, "symmetry_figure")
    W = net.weights("hidden1", "input")
    b = net.bias("hidden1")
    out_w, out_b = net.weights("output", "hidden1")[0], net.bias("output")[0]
    scale = float(np.abs(np.concatenate([W.ravel(), b, out_w, [out_b]])).max())
    fig = _new_figure(figsize=(11, 2.6))
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [6, 1, 2, 6]})
    hinton(axes[0], W, scale, "input -> hidden (rows: hidden units)")
    hinton(axes[1], b.reshape(-1, 1), scale, "bias")
    hinton(axes[2], np.append(out_w, out_b).reshape(1, -1), scale, "-> output, bias")
    axes[3].plot(np.arange(1, len(errors) + 1), errors)
    axes[3].set_xlabel("sweep")
    axes[3].set_ylabel("E")
    axes[3].set_title("error", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, format)


def family_trees_figure(net, path, title: str | None = None,
                        format: str | None = None) -> None:
    """Nature Fig. 4 style: for each of the 6 units fed by the person inputs, its 24 weights as an
    English row (Christopher ... Charlotte) above the isomorphic Italian row."""
    W = net.weights("person_code", "person")
    scale = float(np.abs(W).max())
    fig = _new_figure(figsize=(6, 1.1 * len(W)))
    axes = fig.subplots(len(W), 1)
    for unit, ax in enumerate(np.atleast_1d(axes)):
        hinton(ax, W[unit].reshape(2, 12), scale, f"unit {unit + 1}: English (top), Italian")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, format)


def sweeps_histogram(sweeps, unsolved: int, path, title: str | None = None,
                     format: str | None = None) -> None:
    """A histogram of the sweeps each solved run took (log-spaced bins); the unsolved runs are
    counted in the title."""
    sweeps = np.asarray(sweeps, dtype=float)
    if not np.isfinite(sweeps).all():
        raise ValueError("sweeps must be finite: give the solved runs' sweeps only, and the "
                         "unsolved runs' number as `unsolved`")
    fig = _new_figure(figsize=(6, 3))
    ax = fig.subplots()
    if sweeps.size:
        ax.hist(sweeps, bins=np.geomspace(max(sweeps.min(), 1), sweeps.max() + 1, 30))
        ax.set_xscale("log")
    ax.set_xlabel("sweeps to solve")
    ax.set_ylabel("runs")
    ax.set_title((title + "; " if title else "") + f"{unsolved} not solved", fontsize=9)
    fig.tight_layout()
    _save(fig, path, format)


def tc_figure(kinds: dict, fields: list, labels: list, path, title: str | None = None,
              format: str | None = None) -> None:
    """The T-C receptive fields: the chapter's kinds (`kinds`: name -> 3x3) in the top row, and
    learned 3x3 `fields` below, each titled with its label (e.g. its nearest kind)."""
    n_cols = max(len(kinds), min(len(fields), 8))
    n_rows = 1 + -(-len(fields) // n_cols)
    fig = _new_figure(figsize=(1.5 * n_cols, 1.7 * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, W) in zip(axes[0], kinds.items()):
        ax.axis("on")
        hinton(ax, W, None, f"chapter: {name}")
    for i, (W, label) in enumerate(zip(fields, labels)):
        ax = axes[1 + i // n_cols][i % n_cols]
        ax.axis("on")
        hinton(ax, W, None, label)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, format)
