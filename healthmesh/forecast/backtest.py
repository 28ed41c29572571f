"""Backtests with the data as it was: for each reference date R, only data as of R minus 7 days.

For every Saturday R the forecasters see the vintage dated R - 7 days when one exists (the numbers as
they were published then, before later revisions), otherwise the latest data cut at R - 7 days. They
forecast horizons 0..3 (the weeks ending R, R + 7, R + 14, R + 21) for every location in that data.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from healthmesh.errors import ForecastError
from healthmesh.forecast.hubformat import to_hub_rows, write_hub_forecasts
from healthmesh.forecast.models import (
    ENSEMBLE_SPECS,
    ENSEMBLES,
    GBQRForecaster,
    combine_ensemble,
    ensemble_members,
    make_model,
)
from healthmesh.forecast.quantiles import FLUSIGHT_QUANTILES
from healthmesh.forecast.scores import score_forecasts

__all__ = [
    "BacktestResult",
    "data_as_of",
    "parse_reference_dates",
    "run_backtest",
]

WEEK = pd.Timedelta(days=7)


@dataclass
class BacktestResult:
    """Forecasts of every model in hub rows (with ``model``), seconds per model, files written."""

    forecasts: pd.DataFrame
    seconds: dict[str, float]
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    vintage_dates: list[pd.Timestamp] = field(default_factory=list)


def parse_reference_dates(spec: str) -> list[pd.Timestamp]:
    """``START:END`` (both Saturdays, inclusive) or a comma-separated list of Saturdays."""
    try:
        if ":" in spec:
            start, end = (pd.Timestamp(p) for p in spec.split(":", 1))
            dates = list(pd.date_range(start, end, freq="7D"))
        else:
            dates = [pd.Timestamp(p) for p in spec.split(",") if p.strip()]
    except ValueError as error:
        raise ForecastError(
            f"reference dates {spec!r} are not dates; write START:END as YYYY-MM-DD:YYYY-MM-DD"
        ) from error
    if not dates:
        raise ForecastError(f"reference dates {spec!r} give no date; is START after END?")
    bad = [d for d in dates if d.weekday() != 5]
    if bad:
        raise ForecastError(
            f"reference date {bad[0]:%Y-%m-%d} is not a Saturday; FluSight reference dates are Saturdays"
        )
    return dates


def data_as_of(
    target: pd.DataFrame, vintages: dict[pd.Timestamp, pd.DataFrame] | None, reference_date: pd.Timestamp
) -> tuple[pd.DataFrame, bool]:
    """The data a forecaster may use for ``reference_date``, and whether it came from a vintage."""
    cut = reference_date - WEEK
    if vintages and cut in vintages:
        data = vintages[cut]
        return data[data["ds"] <= cut], True
    return target[target["ds"] <= cut], False


def _past_member_wis(
    history: pd.DataFrame, members: list[str], data: pd.DataFrame, cut: pd.Timestamp
) -> dict[str, float]:
    """Mean WIS of each member over its earlier forecasts whose targets the data at ``cut`` already shows."""
    if history.empty:
        return {m: float("nan") for m in members}
    past = history[(history["model"].isin(members)) & (history["target_end_date"] <= cut)]
    if past.empty:
        return {m: float("nan") for m in members}
    scores = score_forecasts(past, data)
    means = scores.groupby("model")["wis"].mean()
    return {m: float(means.get(m, float("nan"))) for m in members}


@dataclass
class _Round:
    """One reference date with the data a forecaster may see for it."""

    index: int
    reference_date: pd.Timestamp
    cut: pd.Timestamp
    data: pd.DataFrame


def _rounds(
    target: pd.DataFrame,
    vintages: dict[pd.Timestamp, pd.DataFrame] | None,
    reference_dates: list[pd.Timestamp],
    skipped: list[str],
    used_vintages: list[pd.Timestamp],
) -> list[_Round]:
    rounds = []
    for index, reference_date in enumerate(reference_dates):
        data, from_vintage = data_as_of(target, vintages, reference_date)
        cut = reference_date - WEEK
        if from_vintage:
            used_vintages.append(reference_date)
        # Only series reported up to the cut: a stale series would put its forecasts on wrong weeks.
        data = data[data.groupby("unique_id")["ds"].transform("max") == cut]
        if data.empty:
            skipped.append(f"{reference_date:%Y-%m-%d}: no data for the week ending {cut:%Y-%m-%d}")
            continue
        rounds.append(_Round(index, reference_date, cut, data))
    return rounds


_Forecasts = dict[tuple[str, pd.Timestamp], pd.DataFrame]


def _forecast_singles(
    names: list[str],
    rounds: list[_Round],
    auxiliary: pd.DataFrame | None,
    populations: dict[str, float] | None,
    horizons: int,
    refit_every: int,
    levels: tuple[float, ...],
) -> tuple[_Forecasts, dict[str, float], list[str]]:
    """Run single models over all rounds in date order (one process may run one group of models)."""
    out: _Forecasts = {}
    seconds = {name: 0.0 for name in names}
    skipped: list[str] = []
    gbqr: GBQRForecaster | None = None
    for round_ in rounds:
        aux = auxiliary[auxiliary["ds"] <= round_.cut] if auxiliary is not None else None
        for name in names:
            started = time.perf_counter()
            try:
                if name == "gbqr":
                    if gbqr is None or round_.index % refit_every == 0:
                        gbqr = GBQRForecaster(populations=populations, auxiliary=aux).fit(round_.data)
                    else:
                        gbqr.refresh(round_.data)
                    out[name, round_.reference_date] = gbqr.predict(horizons, levels)
                else:
                    model = make_model(name, populations, aux).fit(round_.data)
                    out[name, round_.reference_date] = model.predict(horizons, levels)
            except ForecastError as error:
                skipped.append(f"{round_.reference_date:%Y-%m-%d} {name}: {error}")
                if name == "gbqr":
                    gbqr = None
            seconds[name] += time.perf_counter() - started
    return out, seconds, skipped


def run_backtest(
    target: pd.DataFrame,
    reference_dates: list[pd.Timestamp],
    models: list[str],
    *,
    vintages: dict[pd.Timestamp, pd.DataFrame] | None = None,
    auxiliary: pd.DataFrame | None = None,
    populations: dict[str, float] | None = None,
    target_name: str = "wk inc flu hosp",
    horizons: int = 4,
    refit_every: int = 4,
    out_dir: Path | None = None,
    levels: tuple[float, ...] = FLUSIGHT_QUANTILES,
    model_prefix: str = "healthmesh-",
    workers: int = 2,
) -> BacktestResult:
    """Forecast every reference date from the data as of R - 7 days; see the module docstring.

    ``gbqr`` is refitted every ``refit_every`` weeks and takes the newest data as its forecast origin
    every week in between (its trees then come from data that is older still, never newer). With
    ``workers`` = 2, gbqr and the other single models run in two processes (the two cores of a small
    machine); ensembles are then combined date by date, the weighted one from past scores only.
    """
    wanted_ensembles = [m for m in models if m in ENSEMBLES]
    needed = ensemble_members([m for m in models if m not in ENSEMBLES] + wanted_ensembles)
    skipped: list[str] = []
    used_vintages: list[pd.Timestamp] = []
    rounds = _rounds(target, vintages, reference_dates, skipped, used_vintages)
    groups = [g for g in (["gbqr"] if "gbqr" in needed else [], [m for m in needed if m != "gbqr"]) if g]
    arguments = (rounds, auxiliary, populations, horizons, refit_every, levels)
    if workers > 1 and len(groups) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(groups))) as pool:
            results = list(pool.map(_forecast_singles, groups, *[[a] * len(groups) for a in arguments]))
    else:
        results = [_forecast_singles(g, *arguments) for g in groups]
    singles: _Forecasts = {}
    seconds: dict[str, float] = {}
    for found, spent, missed in results:
        singles.update(found)
        seconds.update(spent)
        skipped.extend(missed)
    seconds.update({name: 0.0 for name in wanted_ensembles})
    rows: list[pd.DataFrame] = []
    for round_ in rounds:
        wide = {
            name: singles[name, round_.reference_date]
            for name in needed
            if (name, round_.reference_date) in singles
        }
        for name in wanted_ensembles:
            started = time.perf_counter()
            members, method = ENSEMBLE_SPECS[name]
            past = None
            if method == "weighted":
                history = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
                past = _past_member_wis(history, list(members), round_.data, round_.cut)
            combined = combine_ensemble(name, wide, levels, past)
            if combined is not None:
                wide[name] = combined
            seconds[name] += time.perf_counter() - started
        for name, frame in wide.items():
            rows.append(to_hub_rows(frame, round_.reference_date, target_name, levels).assign(model=name))
    forecasts = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    files: list[Path] = []
    if out_dir is not None and not forecasts.empty:
        for (model_name, _), group in forecasts[forecasts["model"].isin(models)].groupby(
            ["model", "reference_date"]
        ):
            files.append(write_hub_forecasts(group, out_dir, f"{model_prefix}{model_name!s}"))
    return BacktestResult(forecasts, seconds, files, skipped, used_vintages)
