"""ROC and calibration plots (PNG), drawn with matplotlib's non-interactive backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from healthmesh.risk.metrics import smoothed_calibration  # noqa: E402

__all__ = ["write_plots"]


def _roc(y: np.ndarray, p: np.ndarray, title: str, path: Path, auroc: float) -> None:
    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot(fpr, tpr, color="#1f5fa8", lw=1.8, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _calibration(y: np.ndarray, p: np.ndarray, title: str, path: Path) -> None:
    bins = np.unique(np.quantile(p, np.linspace(0, 1, 11)))
    index = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, max(len(bins) - 2, 0))
    predicted = [p[index == b].mean() for b in range(len(bins) - 1) if np.any(index == b)]
    observed = [y[index == b].mean() for b in range(len(bins) - 1) if np.any(index == b)]
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


def write_plots(y: np.ndarray, p: np.ndarray, folder: Path, title: str, auroc: float) -> list[str]:
    """Write ``roc.png`` and ``calibration.png`` into ``folder``; returns their file names."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    if y.min() == y.max():
        return []
    _roc(y, p, title, folder / "roc.png", auroc)
    _calibration(y, p, title, folder / "calibration.png")
    return ["roc.png", "calibration.png"]
