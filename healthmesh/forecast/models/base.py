"""What every forecaster offers: ``fit(long frame)`` then ``predict(h, levels)`` -> quantiles per step."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from healthmesh.errors import ForecastError
from healthmesh.forecast.quantiles import tidy_quantiles

__all__ = ["QuantileForecaster", "check_horizon", "future_dates", "wide_frame"]


@runtime_checkable
class QuantileForecaster(Protocol):
    """A model that forecasts quantiles of every series ``h`` steps past its last observation."""

    name: str

    def fit(self, df: pd.DataFrame) -> QuantileForecaster: ...

    def predict(self, h: int, levels: tuple[float, ...]) -> pd.DataFrame:
        """Wide frame: ``unique_id, step, ds`` and one column per level (sorted, >= 0)."""
        ...


def check_horizon(h: int) -> None:
    if h < 1:
        raise ForecastError(f"`h` (steps ahead) must be >= 1; got {h}")


def future_dates(last: pd.Timestamp, h: int, step: pd.Timedelta) -> list[pd.Timestamp]:
    return [last + step * k for k in range(1, h + 1)]


def wide_frame(
    ids: list[str],
    last_dates: list[pd.Timestamp],
    h: int,
    levels: tuple[float, ...],
    values: np.ndarray,
    step: pd.Timedelta,
) -> pd.DataFrame:
    """Assemble (series x steps x levels) values into the wide output every forecaster returns."""
    values = tidy_quantiles(values.reshape(len(ids) * h, len(levels)))
    frame = pd.DataFrame(values, columns=list(levels))
    frame.insert(0, "ds", [d for last in last_dates for d in future_dates(last, h, step)])
    frame.insert(0, "step", np.tile(np.arange(1, h + 1), len(ids)))
    frame.insert(0, "unique_id", np.repeat(np.asarray(ids, dtype=object), h))
    return frame


def series_step(df: pd.DataFrame) -> pd.Timedelta:
    """The spacing of the series (weekly for surveillance data), read from the data."""
    gaps = df.sort_values(["unique_id", "ds"]).groupby("unique_id")["ds"].diff().dropna()
    return pd.Timedelta(gaps.mode().iloc[0]) if not gaps.empty else pd.Timedelta(days=7)
