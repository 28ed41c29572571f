"""Forecasters behind one fit/predict shape, and the registry the backtest and CLI pick them from."""

from __future__ import annotations

import pandas as pd

from healthmesh.errors import ForecastError
from healthmesh.forecast.models.base import QuantileForecaster
from healthmesh.forecast.models.baseline import FluSightBaseline
from healthmesh.forecast.models.classical import StatsForecastModel
from healthmesh.forecast.models.ensemble import combine_quantiles, inverse_wis_weights
from healthmesh.forecast.models.gbqr import GBQRForecaster

__all__ = [
    "ENSEMBLES",
    "MODEL_NAMES",
    "SINGLE_MODELS",
    "FluSightBaseline",
    "GBQRForecaster",
    "QuantileForecaster",
    "StatsForecastModel",
    "combine_quantiles",
    "inverse_wis_weights",
    "make_model",
    "resolve_models",
]

#: Models fitted on the data themselves.
SINGLE_MODELS: tuple[str, ...] = ("baseline", "ets", "arima", "theta", "gbqr")
#: Ensembles built from the single models' forecasts (all but the baseline): median and WIS-weighted.
ENSEMBLES: tuple[str, ...] = ("ensemble", "ensemble-weighted")
MODEL_NAMES: tuple[str, ...] = SINGLE_MODELS + ENSEMBLES


def make_model(
    name: str, populations: dict[str, float] | None = None, auxiliary: pd.DataFrame | None = None
) -> QuantileForecaster:
    """A fresh single model by name."""
    if name == "baseline":
        return FluSightBaseline()
    if name in ("ets", "arima", "theta"):
        return StatsForecastModel(name)
    if name == "gbqr":
        return GBQRForecaster(populations=populations, auxiliary=auxiliary)
    raise ForecastError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)} or 'all'")


def resolve_models(requested: list[str] | None, default: str) -> list[str]:
    """The models to run: the default alone, 'all', or the names given (checked)."""
    if not requested:
        return [default]
    if "all" in requested:
        return list(MODEL_NAMES)
    unknown = [m for m in requested if m not in MODEL_NAMES]
    if unknown:
        raise ForecastError(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_NAMES)} or 'all'")
    return list(dict.fromkeys(requested))
