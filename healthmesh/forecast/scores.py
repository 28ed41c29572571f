"""Scores for quantile forecasts: WIS (Bracher et al. 2021) and its parts, coverage, relative WIS.

WIS of one forecast with median m and K central intervals [l_k, u_k] at levels 1 - alpha_k::

    WIS = 1 / (K + 1/2) * ( 1/2 |y - m| + sum_k alpha_k / 2 * IS_alpha_k )
    IS_alpha = (u - l) + 2/alpha (l - y) 1{y < l} + 2/alpha (y - u) 1{y > u}

which equals twice the mean pinball loss over the 2K + 1 levels. Both forms are implemented and
tested against each other and against hand-computed cases.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from healthmesh.errors import ForecastError

__all__ = [
    "KEYS",
    "interval_pairs",
    "pairwise_relative_wis",
    "pinball_wis",
    "relative_wis",
    "score_forecasts",
    "summarise_scores",
    "wis_components",
]

#: The columns that identify one forecast in the hub format.
KEYS = ["model", "reference_date", "location", "horizon", "target_end_date"]


def interval_pairs(levels: np.ndarray) -> tuple[int, list[tuple[int, int, float]]]:
    """Index of the median and (lower index, upper index, alpha) of each central interval."""
    levels = np.round(np.asarray(levels, dtype=float), 6)
    medians = np.flatnonzero(np.isclose(levels, 0.5))
    if medians.size != 1:
        raise ForecastError(f"quantile levels {levels.tolist()} need exactly one 0.5 (the median) for WIS")
    pairs = []
    for i, tau in enumerate(levels):
        if tau < 0.5:
            j = np.flatnonzero(np.isclose(levels, 1.0 - tau))
            if j.size != 1:
                raise ForecastError(
                    f"quantile level {tau} has no symmetric partner {1 - tau}; WIS needs pairs"
                )
            pairs.append((i, int(j[0]), float(2 * tau)))
    return int(medians[0]), pairs


def pinball_wis(y: np.ndarray, levels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """WIS as twice the mean pinball (quantile) loss; ``values`` is (forecasts x levels)."""
    y = np.asarray(y, dtype=float)[:, None]
    levels = np.asarray(levels, dtype=float)[None, :]
    diff = y - np.asarray(values, dtype=float)
    loss = np.maximum(levels * diff, (levels - 1.0) * diff)
    return 2.0 * loss.mean(axis=1)


def wis_components(y: np.ndarray, levels: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
    """WIS in the interval form, split into dispersion, over- and under-prediction (they sum to WIS)."""
    y = np.asarray(y, dtype=float)
    values = np.asarray(values, dtype=float)
    median_index, pairs = interval_pairs(levels)
    median = values[:, median_index]
    norm = len(pairs) + 0.5
    dispersion = np.zeros_like(y)
    over = 0.5 * np.clip(median - y, 0, None)
    under = 0.5 * np.clip(y - median, 0, None)
    for lo, hi, alpha in pairs:
        lower, upper = values[:, lo], values[:, hi]
        weight = alpha / 2.0
        dispersion += weight * (upper - lower)
        over += weight * (2.0 / alpha) * np.clip(lower - y, 0, None)
        under += weight * (2.0 / alpha) * np.clip(y - upper, 0, None)
    parts = {"dispersion": dispersion / norm, "overprediction": over / norm, "underprediction": under / norm}
    parts["wis"] = parts["dispersion"] + parts["overprediction"] + parts["underprediction"]
    return parts


def score_forecasts(forecasts: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """One row per forecast (model, reference date, location, horizon) with WIS, its parts, AE, coverage.

    ``forecasts`` is hub format with a ``model`` column; ``truth`` a long frame (unique_id = location,
    ds = target end date). Forecasts whose target is not (yet) in the truth are left out.
    """
    quantile = forecasts[forecasts["output_type"] == "quantile"].copy()
    if quantile.empty:
        raise ForecastError("no quantile forecasts to score; expected output_type 'quantile' rows")
    quantile["level"] = quantile["output_type_id"].astype(float).round(4)
    wide = quantile.pivot_table(index=KEYS, columns="level", values="value", aggfunc="first")
    wide = wide.dropna()
    levels = wide.columns.to_numpy(dtype=float)
    index = wide.index.to_frame(index=False)
    lookup = truth.rename(columns={"unique_id": "location", "ds": "target_end_date", "y": "observed"})
    joined = index.merge(lookup[["location", "target_end_date", "observed"]], how="left")
    keep = joined["observed"].notna().to_numpy()
    values = np.sort(wide.to_numpy(dtype=float)[keep], axis=1)
    out = joined[keep].reset_index(drop=True)
    y = out["observed"].to_numpy(dtype=float)
    parts = wis_components(y, levels, values)
    for name, value in parts.items():
        out[name] = value
    median_index, _ = interval_pairs(levels)
    out["ae_median"] = np.abs(y - values[:, median_index])
    for width, (lo, hi) in {50: (0.25, 0.75), 95: (0.025, 0.975)}.items():
        lower = values[:, int(np.argmin(np.abs(levels - lo)))]
        upper = values[:, int(np.argmin(np.abs(levels - hi)))]
        out[f"cov{width}"] = ((y >= lower) & (y <= upper)).astype(float)
    return out


def _common(scores: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    task = ["reference_date", "location", "horizon"]
    left = scores.loc[scores["model"] == a, [*task, "wis"]]
    right = scores.loc[scores["model"] == b, [*task, "wis"]]
    return left.merge(right, on=task, suffixes=("_a", "_b"))


def relative_wis(scores: pd.DataFrame, model: str, baseline: str) -> float:
    """Mean WIS of ``model`` over mean WIS of ``baseline`` on the forecasts both made."""
    common = _common(scores, model, baseline)
    if common.empty or common["wis_b"].sum() == 0:
        raise ForecastError(f"models {model!r} and {baseline!r} share no scorable forecast")
    return float(common["wis_a"].mean() / common["wis_b"].mean())


def pairwise_relative_wis(scores: pd.DataFrame, baseline: str) -> dict[str, float]:
    """Relative WIS as the FluSight and COVID-19 hubs publish it (Cramer et al. 2022).

    theta_i is the geometric mean over all models j of the common-set ratio mean WIS_i / mean WIS_j;
    the relative WIS of i is theta_i / theta_baseline. With two models it is the plain ratio.
    """
    models = sorted(scores["model"].unique())
    if baseline not in models:
        raise ForecastError(f"baseline {baseline!r} is not among the scored models {models}")
    log_theta = {}
    for a in models:
        logs = []
        for b in models:
            common = _common(scores, a, b) if a != b else None
            if common is None:
                logs.append(0.0)
            elif not common.empty and common["wis_a"].mean() > 0 and common["wis_b"].mean() > 0:
                logs.append(float(np.log(common["wis_a"].mean() / common["wis_b"].mean())))
        log_theta[a] = float(np.mean(logs))
    return {m: float(np.exp(log_theta[m] - log_theta[baseline])) for m in models}


def summarise_scores(scores: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """One row per model: forecasts scored, mean WIS, its parts, MAE, coverage and relative WIS."""
    table = scores.groupby("model").agg(
        n=("wis", "size"),
        wis=("wis", "mean"),
        dispersion=("dispersion", "mean"),
        overprediction=("overprediction", "mean"),
        underprediction=("underprediction", "mean"),
        mae=("ae_median", "mean"),
        cov50=("cov50", "mean"),
        cov95=("cov95", "mean"),
    )
    if baseline is not None:
        table["rel_wis"] = [relative_wis(scores, m, baseline) for m in table.index]
        pairwise = pairwise_relative_wis(scores, baseline)
        table["rel_wis_pairwise"] = [pairwise[m] for m in table.index]
        table = table.sort_values("rel_wis")
    return table.reset_index()
