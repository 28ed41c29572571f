"""The metric set of OHDSI PatientLevelPrediction, on 0/1 outcomes and predicted risks.

Discrimination: AUROC with a DeLong 95% CI, AUPRC. Accuracy: Brier and scaled Brier. Calibration:
calibration-in-the-large (mean predicted minus observed risk), the calibration intercept (logistic
recalibration with the slope fixed at 1), the calibration slope (y ~ a + b logit p), E/O, and the
Austin-Steyerberg smoothed-calibration errors Eavg (= ICI), E50, E90 and Emax.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score

from healthmesh.privacy.release import Release

__all__ = [
    "METRIC_DECIMALS",
    "METRIC_KEYS",
    "auroc_delong",
    "calibration_fit",
    "evaluate",
    "evaluate_groups",
    "release_groups",
    "release_metrics",
    "smoothed_calibration",
]

METRIC_KEYS = (
    "n",
    "n_outcomes",
    "outcome_rate",
    "mean_predicted_risk",
    "auroc",
    "auroc_ci_low",
    "auroc_ci_high",
    "auprc",
    "brier",
    "scaled_brier",
    "calibration_in_the_large",
    "calibration_intercept",
    "calibration_slope",
    "eo_ratio",
    "e_avg",
    "e50",
    "e90",
    "e_max",
    "ici",
)

_EPS = 1e-12


def auroc_delong(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """AUROC and its 95% confidence interval by DeLong's method (midranks, so ties count half)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    pos, neg = p[y], p[~y]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return math.nan, math.nan, math.nan
    ranks_all = rankdata(np.concatenate([pos, neg]))
    ranks_pos = rankdata(pos)
    ranks_neg = rankdata(neg)
    auc = (ranks_all[:m].sum() - m * (m + 1) / 2) / (m * n)
    v_pos = (ranks_all[:m] - ranks_pos) / n
    v_neg = 1.0 - (ranks_all[m:] - ranks_neg) / m
    var = (v_pos.var(ddof=1) / m if m > 1 else 0.0) + (v_neg.var(ddof=1) / n if n > 1 else 0.0)
    half = 1.959963984540054 * math.sqrt(max(var, 0.0))
    return float(auc), float(max(0.0, auc - half)), float(min(1.0, auc + half))


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(q / (1 - q))


def calibration_fit(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Calibration intercept (offset model, slope fixed at 1) and slope (y ~ a + b logit p), by Newton steps."""
    y = np.asarray(y, dtype=float)
    lp = _logit(np.asarray(p, dtype=float))
    # Intercept with logit(p) as an offset.
    a = 0.0
    for _ in range(50):
        mu = 1 / (1 + np.exp(-(a + lp)))
        grad = float(np.sum(y - mu))
        hess = float(np.sum(mu * (1 - mu)))
        if hess < _EPS:
            break
        step = grad / hess
        a += step
        if abs(step) < 1e-10:
            break
    # Slope and intercept of the weak-calibration model; Newton steps halved until the likelihood rises.
    design = np.column_stack([np.ones_like(lp), lp])

    def loglik(b: np.ndarray) -> float:
        eta = design @ b
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    beta = np.array([0.0, 1.0])
    current = loglik(beta)
    for _ in range(100):
        mu = 1 / (1 + np.exp(-np.clip(design @ beta, -500, 500)))
        grad = design.T @ (y - mu)
        hess = (design * (mu * (1 - mu))[:, None]).T @ design
        try:
            newton = np.linalg.solve(hess + np.eye(2) * 1e-9, grad)
        except np.linalg.LinAlgError:
            break
        scale = 1.0
        while scale > 1e-6:
            candidate = beta + scale * newton
            value = loglik(candidate)
            if value >= current - 1e-12:
                break
            scale /= 2
        else:
            break
        beta, current = candidate, value
        if np.max(np.abs(scale * newton)) < 1e-10:
            break
    return float(a), float(beta[1])


def smoothed_calibration(
    y: np.ndarray, p: np.ndarray, span: float = 0.75, grid: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Local-linear (tricube, loess-like) smooth of observed outcome on predicted risk, at each prediction."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    ps, ys = p[order], y[order]
    points = np.unique(np.quantile(ps, np.linspace(0, 1, grid)))
    k = max(10, int(math.ceil(span * len(ps))))
    k = min(k, len(ps))
    fitted = np.empty(len(points))
    for i, x0 in enumerate(points):
        dist = np.abs(ps - x0)
        radius = np.partition(dist, k - 1)[k - 1] if k < len(ps) else dist.max()
        radius = max(radius, 1e-9) * 1.0001
        w = np.clip(1 - (dist / radius) ** 3, 0, None) ** 3
        sw = w.sum()
        mx = (w * ps).sum() / sw
        my = (w * ys).sum() / sw
        sxx = (w * (ps - mx) ** 2).sum()
        slope = (w * (ps - mx) * (ys - my)).sum() / sxx if sxx > 1e-15 else 0.0
        fitted[i] = my + slope * (x0 - mx)
    fitted = np.clip(fitted, 0.0, 1.0)
    return points, fitted


def evaluate(y: np.ndarray, p: np.ndarray) -> dict[str, float | int]:
    """Every metric of ``METRIC_KEYS`` for outcomes ``y`` (0/1) and predicted risks ``p``."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    n = len(y)
    n_outcomes = int(y.sum())
    rate = n_outcomes / n if n else math.nan
    out: dict[str, float | int] = {"n": n, "n_outcomes": n_outcomes, "outcome_rate": rate}
    out["mean_predicted_risk"] = float(p.mean()) if n else math.nan
    auc, low, high = auroc_delong(y, p)
    out.update(auroc=auc, auroc_ci_low=low, auroc_ci_high=high)
    both = 0 < n_outcomes < n
    out["auprc"] = float(average_precision_score(y, p)) if both else math.nan
    brier = float(np.mean((p - y) ** 2)) if n else math.nan
    out["brier"] = brier
    out["scaled_brier"] = 1 - brier / (rate * (1 - rate)) if both else math.nan
    out["calibration_in_the_large"] = float(p.mean() - rate) if n else math.nan
    if both:
        intercept, slope = calibration_fit(y, p)
        points, smooth_at_grid = smoothed_calibration(y, p)
        smoothed = np.interp(p, points, smooth_at_grid)
        errors = np.abs(p - smoothed)
        out.update(
            calibration_intercept=intercept,
            calibration_slope=slope,
            e_avg=float(errors.mean()),
            e50=float(np.quantile(errors, 0.5)),
            e90=float(np.quantile(errors, 0.9)),
            e_max=float(errors.max()),
            ici=float(errors.mean()),
        )
    else:
        for key in ("calibration_intercept", "calibration_slope", "e_avg", "e50", "e90", "e_max", "ici"):
            out[key] = math.nan
    out["eo_ratio"] = float(p.sum() / n_outcomes) if n_outcomes else math.nan
    return {key: out[key] for key in METRIC_KEYS}


def evaluate_groups(
    y: np.ndarray, p: np.ndarray, groups: dict[str, np.ndarray], min_outcomes: int = 5
) -> dict[str, dict[str, Any]]:
    """The metric set per level of each grouping (sex, age band, hub), so that unfair gaps show.

    A level with fewer than ``min_outcomes`` outcomes or non-outcomes reports its counts only.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    result: dict[str, dict[str, Any]] = {}
    for name, labels in groups.items():
        labels = np.asarray(labels).astype(str)
        per_level: dict[str, Any] = {}
        for level in sorted(set(labels.tolist())):
            mask = labels == level
            n, k = int(mask.sum()), int(y[mask].sum())
            if k < min_outcomes or n - k < min_outcomes:
                per_level[level] = {"n": n, "n_outcomes": k, "note": f"fewer than {min_outcomes} per class"}
            else:
                per_level[level] = evaluate(y[mask], p[mask])
        result[name] = per_level
    return result


# -- the release path ------------------------------------------------------------------------------

#: Released metrics are rounded: a float with all its digits is an exact fraction whose denominator
#: is a count (an AUROC is U / (positives x negatives), an outcome rate k / n), which continued
#: fractions recover; three decimals leave nothing to reconstruct.
METRIC_DECIMALS = 3


def _rounded(value: Any) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), METRIC_DECIMALS)


def release_metrics(
    metrics: dict[str, Any], release: Release, n_key: int, outcome_key: int
) -> dict[str, Any]:
    """The metric set of ``evaluate`` as it may leave the hub.

    ``n`` and ``n_outcomes`` go through ``release`` (cell keys: the person sets behind them); the
    figures that are functions of those counts (outcome rate, calibration-in-the-large, E/O, scaled
    Brier) are recomputed from the released counts, so that multiplying one by another figure gives
    no exact count back; every other metric is rounded (``METRIC_DECIMALS``). With fewer than
    ``min_count`` persons with, or without, the outcome every metric is withheld (``None``).
    """
    n_exact, k_exact = int(metrics["n"]), int(metrics["n_outcomes"])
    n = release.count(n_exact, n_key)
    k = release.count(k_exact, outcome_key)
    out: dict[str, Any] = {"n": n, "n_outcomes": k}
    if min(k_exact, n_exact - k_exact) < release.min_count or not n or not k:
        out.update({key: None for key in METRIC_KEYS if key not in out})
        out["withheld"] = f"fewer than {release.min_count} persons with or without the outcome"
        return out
    rate = k / n
    mean_risk = float(metrics["mean_predicted_risk"])
    derived = {
        "outcome_rate": rate,
        "calibration_in_the_large": mean_risk - rate,
        "eo_ratio": mean_risk * n / k,
        "scaled_brier": 1 - float(metrics["brier"]) / (rate * (1 - rate)) if 0 < rate < 1 else math.nan,
    }
    for key in METRIC_KEYS:
        if key not in out:
            out[key] = _rounded(derived.get(key, metrics.get(key)))
    return out


def release_groups(
    y: np.ndarray, p: np.ndarray, groups: dict[str, np.ndarray], persons: np.ndarray, release: Release
) -> dict[str, dict[str, Any]]:
    """``evaluate_groups`` through the release path: each level's counts keyed by its persons.

    A level with fewer than ``min_count`` persons with or without the outcome is withheld: its
    counts are released (so, below the threshold, withheld too) and no metric is computed.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    persons = np.asarray(persons)
    result: dict[str, dict[str, Any]] = {}
    for name, labels in groups.items():
        labels = np.asarray(labels).astype(str)
        per_level: dict[str, Any] = {}
        for level in sorted(set(labels.tolist())):
            mask = labels == level
            n, k = int(mask.sum()), int(y[mask].sum())
            exact: dict[str, Any] = {"n": n, "n_outcomes": k}
            if min(k, n - k) >= release.min_count:
                exact = dict(evaluate(y[mask], p[mask]))
            n_key = release.person_key(persons[mask])
            per_level[level] = release_metrics(
                exact, release, n_key, release.person_key(persons[mask & (y == 1)])
            )
        result[name] = per_level
    return result
