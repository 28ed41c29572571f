"""Regional influenza-like-illness forecasts (FluSight quantiles) and Rt from the hub's CDM.

Only weekly counts per region are read (aggregates); the answers are model outputs: quantiles of
next weeks' counts and the reproduction number with its credible interval. Both are computed from
the series as released through the hub's release path (``healthmesh.forecast.protect``), never from
exact counts: a baseline median or an Rt interval inverts to a released count at most, and Rt windows
of fewer than the minimum cell count of cases are withheld.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request

from healthmesh.api.auth import Principal, require_roles
from healthmesh.api.deps import HubState, get_state, set_rows
from healthmesh.api.json_route import JsonRoute
from healthmesh.forecast import DEFAULT_MODEL, FLUSIGHT_QUANTILES, Forecaster, read_hub_ili
from healthmesh.forecast.protect import ProtectedSeries, release_series
from healthmesh.forecast.rt import INFLUENZA_SERIAL_INTERVAL

__all__ = ["router"]

router = APIRouter(tags=["forecast"], route_class=JsonRoute)

Readers = Annotated[Principal, Depends(require_roles("admin", "public-health", "researcher"))]
MAX_HORIZON = 8
SHOWN_QUANTILES = (0.025, 0.25, 0.5, 0.75, 0.975)
ForecastModel = Literal[
    "baseline", "ets", "arima", "theta", "gbqr", "ensemble", "ensemble-weighted", "gbqr-arima"
]


def _series(state: HubState) -> ProtectedSeries:
    def compute() -> ProtectedSeries:
        with state.cursor() as db:
            return release_series(read_hub_ili(db), state.release)

    return state.cached("ili-series", compute)


@router.get("/forecasts")
def forecasts(
    request: Request,
    principal: Readers,
    horizon: Annotated[int, Query(ge=1, le=MAX_HORIZON, description="weeks ahead")] = 4,
    model: Annotated[ForecastModel, Query(description="forecaster")] = DEFAULT_MODEL,  # type: ignore[assignment]
) -> dict[str, Any]:
    """Next weeks' ILI visit counts per region as quantiles (2.5%, 25%, 50%, 75%, 97.5%)."""
    state = get_state(request)
    series = _series(state)

    def compute() -> pd.DataFrame:
        # One fit per model, predicting the longest horizon; shorter horizons are its first weeks.
        predicted = Forecaster([model]).fit(series.series).predict(MAX_HORIZON, FLUSIGHT_QUANTILES)
        return predicted[predicted["model"] == model]

    table = state.cached(f"forecast:{model}", compute)
    table = table[table["step"] <= horizon]
    set_rows(request, len(series.released))
    regions: dict[str, list[dict[str, Any]]] = {}
    for uid, group in table.sort_values(["unique_id", "ds"]).groupby("unique_id", sort=True):
        weeks = [f"{pd.Timestamp(d):%Y-%m-%d}" for d in group["ds"]]
        columns = {f"q{q:g}": group[q].astype(float).round(3).tolist() for q in SHOWN_QUANTILES}
        regions[str(uid)] = [
            {"week": week} | {name: values[i] for name, values in columns.items()}
            for i, week in enumerate(weeks)
        ]
    return {"hub": state.config.hub, "model": model, "horizon": horizon, "regions": regions}


@router.get("/forecasts/rt")
def reproduction_number(
    request: Request,
    principal: Readers,
    weeks: Annotated[int, Query(ge=1, le=104, description="latest weeks per region")] = 8,
) -> dict[str, Any]:
    """The time-varying reproduction number Rt per region (Cori et al.), with its 95% credible interval."""
    state = get_state(request)
    series = _series(state)
    rt = state.cached("rt", lambda: series.rt(*INFLUENZA_SERIAL_INTERVAL))
    set_rows(request, len(series.released))
    regions: dict[str, list[dict[str, Any]]] = {}
    for uid, group in rt.groupby("unique_id", sort=True):
        recent = group.tail(weeks)
        regions[str(uid)] = [
            {
                "week": f"{pd.Timestamp(ds):%Y-%m-%d}",
                "mean": round(mean, 4),
                "lower95": round(low, 4),
                "upper95": round(high, 4),
            }  # fmt: skip
            for ds, mean, low, high in zip(
                recent["ds"],
                recent["mean"].astype(float),
                recent["lower"].astype(float),
                recent["upper"].astype(float),
                strict=True,
            )  # fmt: skip
        ]
    return {"hub": state.config.hub, "regions": regions}
