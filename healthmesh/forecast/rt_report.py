"""Rt for a data file: reads it, picks the serial interval that fits the disease, writes table and charts.

A hub CDM's series is hub data: it is released through the hub's ``Release`` first
(``forecast.protect``), and its Rt withholds the windows of few cases. Public files (DS4C, FluSight)
are estimated as they are.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from healthmesh.errors import ForecastError
from healthmesh.forecast.cdm_series import read_hub_ili
from healthmesh.forecast.charts import rt_chart
from healthmesh.forecast.protect import release_series
from healthmesh.forecast.rt import COVID19_SERIAL_INTERVAL, INFLUENZA_SERIAL_INTERVAL, rt_by_region
from healthmesh.forecast.series import read_ds4c_daily, read_flusight_target
from healthmesh.privacy.release import Release

__all__ = ["is_hub_database", "read_incidence", "rt_report"]


def is_hub_database(path: Path) -> bool:
    """Whether ``path`` is a hub CDM (hub data, released before use) rather than a public file."""
    return Path(path).suffix in (".duckdb", ".db")


def read_incidence(path: Path) -> tuple[pd.DataFrame, tuple[float, float], str]:
    """Incidence series of a DS4C file (daily COVID-19), FluSight file or hub CDM (weekly influenza)."""
    path = Path(path)
    if not path.is_file():
        raise ForecastError(f"data file {path} not found")
    if is_hub_database(path):
        return read_hub_ili(path), INFLUENZA_SERIAL_INTERVAL, "ILI visits"
    columns = set(pd.read_csv(path, nrows=0).columns)
    if "province" in columns:
        return read_ds4c_daily(path), COVID19_SERIAL_INTERVAL, "COVID-19 cases"
    if "location" in columns:
        return read_flusight_target(path), INFLUENZA_SERIAL_INTERVAL, "flu admissions"
    raise ForecastError(f"{path}: expected a DS4C TimeProvince file, a FluSight target file or a hub .duckdb")


def rt_report(
    data: Path,
    out: Path,
    si_mean: float | None = None,
    si_sd: float | None = None,
    window: int | None = None,
    *,
    release: Release | None = None,
) -> dict:
    """Estimate Rt per region, write ``rt.csv`` and one chart per region; return the latest values.

    ``release`` is the hub's release path; it is required for a hub CDM.
    """
    series, (default_mean, default_sd), label = read_incidence(data)
    mean, sd = si_mean or default_mean, si_sd or default_sd
    if is_hub_database(Path(data)):
        if release is None:
            raise ForecastError(f"{data} is a hub CDM: its series leaves the hub only through its release path")
        estimates = release_series(series, release).rt(mean, sd, window)
    else:
        estimates = rt_by_region(series, mean, sd, window)
    out.mkdir(parents=True, exist_ok=True)
    estimates.to_csv(out / "rt.csv", index=False, float_format="%.4f")
    latest, charts = {}, {}
    for region, group in estimates.groupby("unique_id", sort=True):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(region))
        charts[str(region)] = str(rt_chart(group, out / f"rt_{safe}.png", f"Rt of {label}, {region}"))
        last = group.iloc[-1]
        latest[str(region)] = {
            "date": f"{pd.Timestamp(last['ds']):%Y-%m-%d}",
            "mean": float(last["mean"]),
            "lower95": float(last["lower"]),
            "upper95": float(last["upper"]),
        }
    return {"latest": latest, "charts": charts, "table": str(out / "rt.csv")}
