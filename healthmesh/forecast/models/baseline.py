"""The FluSight-baseline method, as CDC describes it, as the reference forecaster.

Median: the last observation, flat. Spread: all past week-to-week changes and their negatives, summed
over the steps ahead by resampling; the median is pinned to the last value and the distribution is
truncated at zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from healthmesh.forecast.models.base import check_horizon, series_step, wide_frame

__all__ = ["FluSightBaseline"]


class FluSightBaseline:
    """Flat random walk with a symmetric empirical spread (CDC FluSight-baseline)."""

    name = "baseline"

    def __init__(self, n_samples: int = 10_000, seed: int = 20231014) -> None:
        self.n_samples = n_samples
        self.seed = seed
        self._history: pd.DataFrame | None = None

    def fit(self, df: pd.DataFrame) -> FluSightBaseline:
        self._history = df.sort_values(["unique_id", "ds"])
        return self

    def predict(self, h: int, levels: tuple[float, ...]) -> pd.DataFrame:
        check_horizon(h)
        assert self._history is not None, "call fit() first"
        rng = np.random.default_rng(self.seed)
        ids, lasts, blocks = [], [], []
        for uid, group in self._history.groupby("unique_id", sort=True):
            y = group["y"].to_numpy(dtype=float)
            diffs = np.diff(y)
            changes = np.concatenate([diffs, -diffs]) if diffs.size else np.zeros(1)
            draws = rng.choice(changes, size=(self.n_samples, h))
            paths = np.cumsum(draws, axis=1)
            q = np.quantile(paths, levels, axis=0).T  # steps x levels
            # Pin the median to the last value: the symmetric changes give a median near 0 already.
            q = q - q[:, [levels.index(0.5)]] if 0.5 in levels else q
            blocks.append(y[-1] + q)
            ids.append(str(uid))
            lasts.append(group["ds"].iloc[-1])
        return wide_frame(ids, lasts, h, levels, np.stack(blocks), series_step(self._history))
