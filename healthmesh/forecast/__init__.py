"""Infectious-disease forecasting: surveillance series, quantile forecasters, WIS scores, backtests, Rt.

Series are long frames (``unique_id, ds, y``); forecasts are the 23 FluSight quantiles in the hub
format; scores follow Bracher et al. (2021); Rt follows Cori et al. (2013). ``forecast_hub_regions``
turns the hubs' CDMs into regional fan charts, Rt charts and early-warning probabilities.
"""

from __future__ import annotations

from healthmesh.forecast.backtest import BacktestResult, data_as_of, parse_reference_dates, run_backtest
from healthmesh.forecast.cdm_series import ILI_CONCEPT_ID, read_hub_ili
from healthmesh.forecast.facade import Forecaster
from healthmesh.forecast.hubformat import read_hub_forecasts, write_hub_forecasts
from healthmesh.forecast.models import DEFAULT_MODEL, MODEL_NAMES
from healthmesh.forecast.quantiles import FLUSIGHT_QUANTILES, exceedance_probability, tidy_quantiles
from healthmesh.forecast.regional import forecast_hub_regions, forecast_regions
from healthmesh.forecast.rt import discretise_serial_interval, estimate_rt, rt_by_region
from healthmesh.forecast.scores import (
    pairwise_relative_wis,
    pinball_wis,
    relative_wis,
    score_forecasts,
    summarise_scores,
    wis_components,
)
from healthmesh.forecast.series import (
    read_ds4c_daily,
    read_ds4c_weekly,
    read_flusight_target,
    read_flusight_vintages,
    read_ilinet,
    validate_series,
)
from healthmesh.forecast.sources import load_source, load_truth

__all__ = [
    "DEFAULT_MODEL",
    "FLUSIGHT_QUANTILES",
    "ILI_CONCEPT_ID",
    "MODEL_NAMES",
    "BacktestResult",
    "Forecaster",
    "data_as_of",
    "discretise_serial_interval",
    "estimate_rt",
    "exceedance_probability",
    "forecast_hub_regions",
    "forecast_regions",
    "load_source",
    "load_truth",
    "pairwise_relative_wis",
    "parse_reference_dates",
    "pinball_wis",
    "read_ds4c_daily",
    "read_ds4c_weekly",
    "read_flusight_target",
    "read_flusight_vintages",
    "read_hub_forecasts",
    "read_hub_ili",
    "read_ilinet",
    "relative_wis",
    "rt_by_region",
    "run_backtest",
    "score_forecasts",
    "summarise_scores",
    "tidy_quantiles",
    "validate_series",
    "wis_components",
    "write_hub_forecasts",
]
