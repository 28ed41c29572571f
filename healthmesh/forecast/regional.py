"""Regional forecasts from the hubs' CDMs: fan charts, Rt charts and early-warning probabilities.

The lead's ``healthmesh demo`` calls :func:`forecast_hub_regions`. Each hub contributes only its
weekly ILI counts per region, released through its own ``Release`` (``forecast.protect``); regions
seen by several hubs are summed from the released counts, so no figure inverts to an exact count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from healthmesh.errors import ForecastError
from healthmesh.forecast.cdm_series import read_hub_ili
from healthmesh.forecast.facade import Forecaster
from healthmesh.forecast.models import DEFAULT_MODEL
from healthmesh.forecast.protect import ProtectedSeries, release_series
from healthmesh.forecast.quantiles import FLUSIGHT_QUANTILES, exceedance_probability
from healthmesh.forecast.rt import INFLUENZA_SERIAL_INTERVAL, rt_by_region
from healthmesh.forecast.series import validate_series
from healthmesh.privacy.release import Release

__all__ = ["forecast_hub_regions", "forecast_regions"]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def forecast_regions(
    series: pd.DataFrame | ProtectedSeries,
    out_dir: Path,
    horizon: int = 4,
    model: str = DEFAULT_MODEL,
    threshold: float | None = None,
    si_mean: float = INFLUENZA_SERIAL_INTERVAL[0],
    si_sd: float = INFLUENZA_SERIAL_INTERVAL[1],
    label: str = "ILI visits",
) -> dict:
    """Forecast every series of a weekly long frame; write charts, exceedance and a summary JSON.

    ``threshold`` is the early-warning level for next week's count; without one each region uses the
    90th percentile of its own past weeks. A ``ProtectedSeries`` (hub data) is forecast from its
    released counts, and its Rt withholds the windows of few cases; a plain frame is public data.
    """
    protected = series if isinstance(series, ProtectedSeries) else None
    frame = series.series if isinstance(series, ProtectedSeries) else series
    data = validate_series(frame, "regional series")
    out_dir.mkdir(parents=True, exist_ok=True)
    levels = FLUSIGHT_QUANTILES
    forecaster = Forecaster([model]).fit(data)
    forecast = forecaster.predict(horizon, levels)
    forecast = forecast[forecast["model"] == model]
    rt = protected.rt(si_mean, si_sd) if protected else rt_by_region(data, si_mean, si_sd)
    regions: dict[str, dict] = {}
    from healthmesh.forecast.charts import fan_chart, rt_chart  # matplotlib only where charts are drawn

    warnings = []
    for uid, history in data.groupby("unique_id", sort=True):
        fc = forecast[forecast["unique_id"] == uid].sort_values("step")
        if fc.empty:
            continue
        name = _safe(str(uid))
        fan = fan_chart(history, fc, out_dir / f"fan_{name}.png", f"{label}, {uid}: {horizon}-week forecast")
        first = fc.iloc[0]
        level = float(threshold) if threshold is not None else float(np.quantile(history["y"], 0.9))
        probability = exceedance_probability(
            np.array(levels), first[list(levels)].to_numpy(dtype=float), level
        )
        warnings.append({"region": str(uid), "week_ending": f"{first['ds']:%Y-%m-%d}", "threshold": level,
                         "probability": round(probability, 4)})  # fmt: skip
        entry: dict = {
            "fan_chart": str(fan),
            "next_week": {
                "week": f"{first['ds']:%Y-%m-%d}",
                "median": float(first[0.5]),
                "lower95": float(first[0.025]),
                "upper95": float(first[0.975]),
            },
            "exceedance": {"threshold": level, "probability": probability},
        }
        region_rt = rt[rt["unique_id"] == uid]
        if not region_rt.empty:
            latest = region_rt.iloc[-1]
            entry["rt_chart"] = str(rt_chart(region_rt, out_dir / f"rt_{name}.png", f"Rt of {label}, {uid}"))
            entry["rt"] = {
                "week": f"{pd.Timestamp(latest['ds']):%Y-%m-%d}",
                "mean": float(latest["mean"]),
                "lower95": float(latest["lower"]),
                "upper95": float(latest["upper"]),
            }
        regions[str(uid)] = entry
    exceedance_file = out_dir / "exceedance.csv"
    pd.DataFrame(warnings).to_csv(exceedance_file, index=False)
    forecast_file = out_dir / "forecast.csv"
    forecast.to_csv(forecast_file, index=False, float_format="%.3f")
    rt_file = out_dir / "rt.csv"
    rt.to_csv(rt_file, index=False, float_format="%.4f")
    summary = {
        "model": model,
        "horizon": horizon,
        "regions": regions,
        "files": {"forecast": str(forecast_file), "exceedance": str(exceedance_file), "rt": str(rt_file)},
        "skipped_models": forecaster.skipped,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def forecast_hub_regions(
    db_paths: dict[str, Path],
    out_dir: Path,
    horizon: int = 4,
    *,
    releases: Mapping[str, Release],
    model: str = DEFAULT_MODEL,
    threshold: float | None = None,
) -> dict:
    """Read each hub's weekly ILI series, forecast per region, write charts; return the summary.

    ``db_paths`` maps hub name to its CDM file, ``releases`` hub name to that hub's ``Release``:
    each hub's series is released cell by cell before it is combined. The summary holds, per region, the fan chart and Rt
    chart paths, next week's median and 95% interval, the exceedance probability and the latest Rt
    with its 95% credible interval; ``hubs`` lists the regions each hub contributed.
    """
    if not db_paths:
        raise ForecastError("no hub databases given; pass {'gwangju': Path('gwangju.duckdb'), ...}")
    missing = sorted(set(db_paths) - set(releases))
    if missing:
        raise ForecastError(f"no release path for hub(s) {missing}; every hub's series must be released")
    released, exact, hubs = [], [], {}
    for hub, path in db_paths.items():
        protected = release_series(read_hub_ili(Path(path)), releases[hub])
        hubs[hub] = sorted(protected.exact["unique_id"].unique())
        released.append(protected.released)
        exact.append(protected.exact)
    min_count = max(releases[hub].min_count for hub in db_paths)
    combined_released = _on_one_grid(released)
    # A region-week that any hub withheld holds a stand-in value: it is withheld in the sum too.
    combined_released["withheld"] = _on_one_grid(released, "withheld")["withheld"].astype(bool).to_numpy()
    combined = ProtectedSeries(combined_released, _on_one_grid(exact), min_count)
    summary = forecast_regions(combined, Path(out_dir), horizon=horizon, model=model, threshold=threshold)
    summary["hubs"] = hubs
    (Path(out_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _on_one_grid(frames: list[pd.DataFrame], column: str = "y") -> pd.DataFrame:
    """Sum the hubs' series per region and week; hubs may cover different spans, missing weeks are 0."""
    combined = pd.concat(frames).groupby(["unique_id", "ds"], as_index=False)[column].sum()
    weeks = pd.date_range(combined["ds"].min(), combined["ds"].max(), freq="7D")
    grid = pd.MultiIndex.from_product(
        [sorted(combined["unique_id"].unique()), weeks], names=["unique_id", "ds"]
    )
    return combined.set_index(["unique_id", "ds"])[column].reindex(grid, fill_value=0).reset_index()
