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
    "DEFAULT_MODEL",
    "ENSEMBLES",
    "ENSEMBLE_SPECS",
    "MODEL_NAMES",
    "SINGLE_MODELS",
    "FluSightBaseline",
    "GBQRForecaster",
    "QuantileForecaster",
    "StatsForecastModel",
    "combine_ensemble",
    "combine_quantiles",
    "ensemble_members",
    "inverse_wis_weights",
    "make_model",
    "resolve_models",
]

#: Models fitted on the data themselves.
SINGLE_MODELS: tuple[str, ...] = ("baseline", "ets", "arima", "theta", "gbqr")
#: Ensembles built from single models' forecasts, level by level: name -> (members, method).
#: ``median`` and ``mean`` combine with equal say; ``weighted`` weighs members by past WIS.
ENSEMBLE_SPECS: dict[str, tuple[tuple[str, ...], str]] = {
    "ensemble": (("ets", "arima", "theta", "gbqr"), "median"),
    "ensemble-weighted": (("ets", "arima", "theta", "gbqr"), "weighted"),
    "gbqr-arima": (("arima", "gbqr"), "mean"),
}
ENSEMBLES: tuple[str, ...] = tuple(ENSEMBLE_SPECS)
MODEL_NAMES: tuple[str, ...] = SINGLE_MODELS + ENSEMBLES
#: The default forecaster, chosen by the 2022-23 FluSight backtest (see docs/readme/forecast.md).
DEFAULT_MODEL = "gbqr-arima"


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


def ensemble_members(names: list[str]) -> list[str]:
    """The single models that ``names`` need, in order (the ensembles' members included)."""
    needed: list[str] = []
    for name in names:
        needed += list(ENSEMBLE_SPECS[name][0]) if name in ENSEMBLE_SPECS else [name]
    return list(dict.fromkeys(needed))


def combine_ensemble(
    name: str,
    forecasts: dict[str, pd.DataFrame],
    levels: tuple[float, ...],
    past_wis: dict[str, float] | None = None,
) -> pd.DataFrame | None:
    """The forecast of ensemble ``name`` from its members' wide forecasts (None when none is there)."""
    member_names, method = ENSEMBLE_SPECS[name]
    members = {m: forecasts[m] for m in member_names if m in forecasts}
    if not members:
        return None
    if method == "median":
        return combine_quantiles(members, levels)
    if method == "mean":
        return combine_quantiles(members, levels, {m: 1.0 for m in members})
    weights = inverse_wis_weights(past_wis or {m: float("nan") for m in members})
    return combine_quantiles(members, levels, weights)
