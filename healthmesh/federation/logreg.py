"""Logistic regression as the federation trains it: numpy gradient steps on a hub's own rows.

The global objective is the pooled mean log-loss plus ``l2 / 2 * ||coef||^2``; a hub minimises its
share with full-batch gradient descent from the global parameters. FedProx adds
``mu / 2 * ||w - w_global||^2`` to the hub's objective. The parameters are the only thing that
travels: ``coef`` (one per feature) and ``intercept`` (one number).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LogisticParams", "local_train", "log_loss", "predict_proba", "roc_auc"]


@dataclass
class LogisticParams:
    """Coefficients (one per preprocessed feature) and the intercept."""

    coef: np.ndarray
    intercept: float

    @classmethod
    def zeros(cls, n_features: int) -> LogisticParams:
        return cls(np.zeros(n_features, dtype=np.float64), 0.0)

    def as_vector(self) -> np.ndarray:
        return np.concatenate([self.coef, [self.intercept]])

    @classmethod
    def from_vector(cls, vector: np.ndarray) -> LogisticParams:
        return cls(np.asarray(vector[:-1], dtype=np.float64), float(vector[-1]))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))


def predict_proba(params: LogisticParams, X: np.ndarray) -> np.ndarray:
    """Probability of the positive class for each row of ``X``."""
    return _sigmoid(X @ params.coef + params.intercept)


def log_loss(params: LogisticParams, X: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(predict_proba(params, X), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def local_train(
    params: LogisticParams,
    X: np.ndarray,
    y: np.ndarray,
    *,
    steps: int,
    lr: float,
    l2: float = 0.0,
    proximal_mu: float = 0.0,
) -> LogisticParams:
    """``steps`` full-batch gradient steps from ``params`` (the global model) on this hub's rows."""
    start = params.as_vector()
    w = start.copy()
    n = max(len(y), 1)
    Xb = np.hstack([X, np.ones((X.shape[0], 1))])
    penalty = np.full(w.shape, l2)
    penalty[-1] = 0.0  # the intercept is not penalised (as in scikit-learn)
    # Gradient descent diverges when a step exceeds 2 / curvature; the log-loss curvature is at most
    # a quarter of the largest eigenvalue of X'X/n, and the penalties add theirs.
    curvature = 0.25 * float(np.linalg.eigvalsh(Xb.T @ Xb / n).max()) + l2 + proximal_mu
    lr = min(lr, 1.0 / curvature) if curvature > 0 else lr
    for _ in range(steps):
        residual = _sigmoid(Xb @ w) - y
        gradient = Xb.T @ residual / n + penalty * w + proximal_mu * (w - start)
        w -= lr * gradient
    return LogisticParams.from_vector(w)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN when a class is absent."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = np.asarray(score)[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
