"""ROC and calibration plots (PNG), drawn with matplotlib's non-interactive backend.

A plot of hub data travels with the model, so it is drawn coarse (``coarse=True``): an exact ROC
curve is a staircase whose steps are 1 / positives high and 1 / negatives wide, which counts the
test set to the person. The coarse ROC is the curve on a fixed grid of false-positive rates with the
sensitivity rounded to ``COARSE_STEP``, and the calibration deciles are rounded the same way.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from healthmesh.risk.metrics import smoothed_calibration  # noqa: E402

__all__ = ["COARSE_STEP", "write_plots"]

COARSE_STEP = 0.02
_FPR_GRID = np.linspace(0.0, 1.0, 21)


def _coarse(values: np.ndarray | list[float]) -> np.ndarray:
    return np.round(np.asarray(values, dtype=float) / COARSE_STEP) * COARSE_STEP


def _roc(y: np.ndarray, p: np.ndarray, title: str, path: Path, auroc: float, coarse: bool) -> None:
    fpr, tpr, _ = roc_curve(y, p)
    if coarse:
        fpr, tpr = _FPR_GRID, _coarse(np.interp(_FPR_GRID, fpr, tpr))
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot(fpr, tpr, color="#1f5fa8", lw=1.8, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _calibration(y: np.ndarray, p: np.ndarray, title: str, path: Path, coarse: bool) -> None:
    bins = np.unique(np.quantile(p, np.linspace(0, 1, 11)))
    index = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, max(len(bins) - 2, 0))
    predicted = [p[index == b].mean() for b in range(len(bins) - 1) if np.any(index == b)]
    observed = [y[index == b].mean() for b in range(len(bins) - 1) if np.any(index == b)]
    if coarse:
        predicted, observed = list(_coarse(predicted)), list(_coarse(observed))
    points, smooth = smoothed_calibration(y, p)
    top = float(max(max(predicted, default=0.0), max(observed, default=0.0), 0.05)) * 1.05
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--", label="ideal")
    ax.plot(points, smooth, color="#c0392b", lw=1.5, label="smoothed")
    ax.scatter(predicted, observed, color="#1f5fa8", s=18, zorder=3, label="deciles")
    ax.set(xlabel="predicted risk", ylabel="observed risk", title=title, xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(
    y: np.ndarray, p: np.ndarray, folder: Path, title: str, auroc: float, *, coarse: bool = False
) -> list[str]:
    """Write ``roc.png`` and ``calibration.png`` into ``folder``; returns their file names."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    if y.min() == y.max():
        return []
    _roc(y, p, title, folder / "roc.png", auroc, coarse)
    _calibration(y, p, title, folder / "calibration.png", coarse)
    return ["roc.png", "calibration.png"]
