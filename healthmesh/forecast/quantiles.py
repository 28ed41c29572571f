"""Quantile levels and the rules every forecast obeys: sorted (never crossing) and never below zero."""

from __future__ import annotations

import numpy as np

from healthmesh.errors import ForecastError

__all__ = [
    "FLUSIGHT_QUANTILES",
    "exceedance_probability",
    "tidy_quantiles",
]

#: The 23 quantile levels of CDC FluSight (and of the COVID-19 Forecast Hub).
FLUSIGHT_QUANTILES: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
    0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99,
)  # fmt: skip


def tidy_quantiles(values: np.ndarray) -> np.ndarray:
    """Sort each row of a (forecasts x levels) array and clip it at zero: no crossing, no negatives."""
    out = np.sort(np.asarray(values, dtype=float), axis=-1)
    out = np.where(np.isfinite(out), out, np.nan)
    if np.isnan(out).any():
        raise ForecastError("a forecaster produced a missing or infinite quantile; check its input series")
    return np.clip(out, 0.0, None)


def exceedance_probability(levels: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """P(Y > threshold) from one quantile forecast (counts, so Y >= 0).

    Between quantiles the distribution function is interpolated linearly; below the lowest quantile it
    falls linearly to 0 at 0; above the highest, the last tail decays exponentially with the spacing of
    the two highest quantiles as its scale.
    """
    levels = np.asarray(levels, dtype=float)
    values = np.sort(np.asarray(values, dtype=float))
    if threshold < 0:
        return 1.0
    if threshold < values[0]:
        return float(1.0 - levels[0] * threshold / values[0])
    if threshold >= values[-1]:
        scale = max(values[-1] - values[-2], 1e-9)
        return float((1.0 - levels[-1]) * np.exp(-(threshold - values[-1]) / scale))
    # Right-continuous CDF on tied quantiles: a tie takes the highest of its levels.
    unique_values, first = np.unique(values[::-1], return_index=True)
    unique_levels = levels[::-1][first]
    return float(1.0 - np.interp(threshold, unique_values, unique_levels))
