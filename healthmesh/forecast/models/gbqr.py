"""A global gradient-boosting quantile model (the approach of UMass-flusion, FluSight's best 2023-24).

One LightGBM quantile regressor per level is trained across all locations (and optional auxiliary
series such as ILINet ILI+) on a common scale: the fourth root of the rate per 100,000, divided by the
series' own 95th percentile. Features are the level, recent changes and slopes (trend), the season
week and the horizon; the target is the change of that scaled value from the last observation to
``k`` weeks ahead. Quantiles are mapped back to counts, sorted and clipped at zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from healthmesh.errors import ForecastError
from healthmesh.forecast.models.base import check_horizon, series_step, wide_frame

__all__ = ["GBQRForecaster"]

_OFFSET = 0.01  # keeps the fourth root smooth at zero
_FEATURES = [
    "level", "lag1", "lag2", "lag3", "mean2", "mean4", "diff1", "diff2", "diff4",
    "slope4", "slope6", "sd4", "season_week", "step", "auxiliary", "scale",
]  # fmt: skip


def _features(z: np.ndarray) -> dict[str, np.ndarray]:
    """Trend and level features at every origin of one scaled series (NaN where history is short)."""
    s = pd.Series(z)
    feats = {
        "level": z,
        "lag1": s.shift(1).to_numpy(),
        "lag2": s.shift(2).to_numpy(),
        "lag3": s.shift(3).to_numpy(),
        "mean2": s.rolling(2).mean().to_numpy(),
        "mean4": s.rolling(4).mean().to_numpy(),
        "diff1": s.diff(1).to_numpy(),
        "diff2": s.diff(2).to_numpy(),
        "diff4": s.diff(4).to_numpy(),
        "sd4": s.rolling(4).std().to_numpy(),
    }
    for window in (4, 6):
        x = np.arange(window) - (window - 1) / 2
        slope = s.rolling(window).apply(lambda v, x=x: float(np.dot(v, x) / np.dot(x, x)), raw=True)
        feats[f"slope{window}"] = slope.to_numpy()
    return feats


def _season_week(ds: pd.Series) -> np.ndarray:
    # Weeks since the start of a flu season (MMWR week 40, early October), in 0..52.
    week = ds.dt.isocalendar().week.to_numpy(dtype=int)
    return (week - 40) % 53


def _interpolate_levels(
    values: np.ndarray, fitted: tuple[float, ...], wanted: tuple[float, ...]
) -> np.ndarray:
    """Linear interpolation of sorted quantiles from the fitted levels to the wanted ones (per row)."""
    grid = np.asarray(fitted)
    out = np.empty((values.shape[0], len(wanted)))
    for j, q in enumerate(wanted):
        i = int(np.clip(np.searchsorted(grid, q) - 1, 0, len(grid) - 2))
        w = float(np.clip((q - grid[i]) / (grid[i + 1] - grid[i]), 0.0, 1.0))
        out[:, j] = values[:, i] * (1 - w) + values[:, i + 1] * w
    return out


class GBQRForecaster:
    """Global LightGBM quantile regression across locations; see the module docstring."""

    name = "gbqr"

    def __init__(
        self,
        populations: dict[str, float] | None = None,
        auxiliary: pd.DataFrame | None = None,
        max_h: int = 4,
        fit_levels: tuple[float, ...] = (0.01, 0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975, 0.99),
        n_estimators: int = 100,
        learning_rate: float = 0.07,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        threads: int = 1,
        seed: int = 42,
    ) -> None:
        self.populations = populations or {}
        self.auxiliary = auxiliary
        self.max_h = max_h
        self.fit_levels = fit_levels
        self.params: dict[str, Any] = {
            "n_estimators": n_estimators,
            "learning_rate": learning_rate,
            "num_leaves": num_leaves,
            "min_child_samples": min_child_samples,
            "max_bin": 63,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "n_jobs": threads,
            "random_state": seed,
            "verbose": -1,
        }
        self._models: dict[float, object] = {}
        self._origins: pd.DataFrame | None = None
        self._step = pd.Timedelta(days=7)

    def _scaled(self, df: pd.DataFrame, auxiliary: bool) -> pd.DataFrame:
        """Per series: fourth-root rate over its 95th percentile, plus features at each origin."""
        frames = []
        for uid, group in df.sort_values(["unique_id", "ds"]).groupby("unique_id", sort=True):
            y = group["y"].to_numpy(dtype=float)
            population = None if auxiliary else self.populations.get(str(uid))
            rate = y / population * 1e5 if population else y
            z = (rate + _OFFSET) ** 0.25
            scale = max(float(np.quantile(z, 0.95)), 0.1)
            zs = z / scale
            frame = pd.DataFrame(_features(zs))
            frame["unique_id"] = str(uid)
            frame["ds"] = group["ds"].to_numpy()
            frame["scale"] = scale
            frame["population"] = population or np.nan
            frame["auxiliary"] = float(auxiliary)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _training_rows(self, scaled: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for k in range(1, self.max_h + 1):
            ahead = scaled.groupby("unique_id")["level"].shift(-k)
            ahead_ds = scaled.groupby("unique_id")["ds"].shift(-k)
            # Only pairs k weeks apart exactly: a reporting gap must not pose as a shorter horizon.
            exact = (ahead_ds - scaled["ds"]) == self._step * k
            part = scaled[exact & ahead.notna()].copy()
            part["target"] = (ahead - scaled["level"])[exact & ahead.notna()]
            part["step"] = float(k)
            part["season_week"] = _season_week(part["ds"] + self._step * k)
            rows.append(part)
        return pd.concat(rows, ignore_index=True).dropna(subset=["lag3", "slope6"])

    def fit(self, df: pd.DataFrame) -> GBQRForecaster:
        import lightgbm as lgb

        self._step = series_step(df)
        target = self._scaled(df, auxiliary=False)
        parts = [target]
        if self.auxiliary is not None and not self.auxiliary.empty:
            parts.append(self._scaled(self.auxiliary, auxiliary=True))
        train = self._training_rows(pd.concat(parts, ignore_index=True))
        if len(train) < 50:
            raise ForecastError(
                f"gbqr needs more history to learn from: {len(train)} training rows; give more weeks"
            )
        x, y = train[_FEATURES].to_numpy(dtype=float), train["target"].to_numpy(dtype=float)
        self._models = {}
        for level in self.fit_levels:
            model = lgb.LGBMRegressor(objective="quantile", alpha=level, **self.params)
            model.fit(x, y)
            self._models[level] = model
        self._origins = target.groupby("unique_id").tail(1).reset_index(drop=True)
        return self

    def refresh(self, df: pd.DataFrame) -> GBQRForecaster:
        """Take newer data as forecast origins while keeping the trees (cheap weekly updates)."""
        if not self._models:
            return self.fit(df)
        self._origins = self._scaled(df, auxiliary=False).groupby("unique_id").tail(1).reset_index(drop=True)
        return self

    def predict(self, h: int, levels: tuple[float, ...]) -> pd.DataFrame:
        check_horizon(h)
        if h > self.max_h:
            raise ForecastError(
                f"gbqr was trained for up to {self.max_h} steps; asked for {h}; refit with max_h={h}"
            )
        if self._origins is None:
            raise ForecastError("gbqr: call fit() before predict()")
        origins = self._origins
        blocks = []
        for k in range(1, h + 1):
            rows = origins.assign(step=float(k), season_week=_season_week(origins["ds"] + self._step * k))
            x = rows[_FEATURES].to_numpy(dtype=float)
            fitted = np.column_stack([self._models[q].predict(x) for q in self.fit_levels])  # type: ignore[attr-defined]
            fitted = np.sort(fitted, axis=1)
            deltas = _interpolate_levels(fitted, self.fit_levels, levels)
            z = (
                np.clip(rows["level"].to_numpy()[:, None] + deltas, 0.0, None)
                * rows["scale"].to_numpy()[:, None]
            )
            rate = np.clip(z**4 - _OFFSET, 0.0, None)
            population = rows["population"].to_numpy()[:, None]
            counts = np.where(np.isnan(population), rate, rate * population / 1e5)
            blocks.append(counts)
        values = np.stack(blocks, axis=1)  # series x steps x levels
        ids = origins["unique_id"].tolist()
        return wide_frame(ids, list(origins["ds"]), h, levels, values, self._step)
