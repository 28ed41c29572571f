"""The hub format of FluSight forecasts: read any hub-format file or folder, write one file per date."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from healthmesh.errors import ForecastError
from healthmesh.forecast.quantiles import FLUSIGHT_QUANTILES

__all__ = ["HUB_COLUMNS", "read_hub_forecasts", "to_hub_rows", "write_hub_forecasts"]

HUB_COLUMNS = [
    "reference_date",
    "location",
    "horizon",
    "target",
    "target_end_date",
    "output_type",
    "output_type_id",
    "value",
]
_DATED = re.compile(r"^\d{4}-\d{2}-\d{2}-(.+)\.csv(\.gz)?$")
_CONCATENATED = re.compile(r"^model-output_(.+?)_.*\.csv(\.gz)?$")


def _model_name(path: Path) -> str:
    for pattern in (_DATED, _CONCATENATED):
        match = pattern.match(path.name)
        if match:
            return match.group(1)
    return path.name.split(".")[0]


def read_hub_forecasts(path: str | Path, target: str | None = None) -> pd.DataFrame:
    """Hub-format forecasts from a file or a folder tree, with a ``model`` column taken from file names.

    Only quantile rows are kept, and only horizons >= 0 (nowcasts of the past week are not scored).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.csv*") if p.name.endswith((".csv", ".csv.gz")))
    elif path.is_file():
        files = [path]
    else:
        raise ForecastError(f"forecasts {path} not found; give a hub-format CSV or a model-output folder")
    if not files:
        raise ForecastError(f"no hub-format CSV files under {path}")
    frames = []
    for file in files:
        frame = pd.read_csv(file, dtype={"location": str, "output_type_id": str})
        missing = set(HUB_COLUMNS) - set(frame.columns)
        if missing:
            raise ForecastError(f"{file} is not hub format: it lacks {sorted(missing)}")
        frame = frame[(frame["output_type"] == "quantile") & (frame["horizon"] >= 0)]
        if target is not None:
            frame = frame[frame["target"] == target]
        frames.append(frame.assign(model=_model_name(file)))
    out = pd.concat(frames, ignore_index=True)
    out["location"] = [loc.zfill(2) if loc.isdigit() else loc for loc in out["location"].astype(str)]
    for column in ("reference_date", "target_end_date"):
        out[column] = pd.to_datetime(out[column])
    return out


def to_hub_rows(
    quantiles: pd.DataFrame,
    reference_date: pd.Timestamp,
    target: str,
    levels: tuple[float, ...] = FLUSIGHT_QUANTILES,
) -> pd.DataFrame:
    """Turn a forecaster's wide output (unique_id, step, ds, one column per level) into hub rows.

    Step 1 is the week after the last observed one, which is horizon 0 for a reference date one week
    after the data (the FluSight convention).
    """
    long = quantiles.melt(
        id_vars=["unique_id", "step", "ds"], value_vars=list(levels), var_name="q", value_name="value"
    )
    return pd.DataFrame(
        {
            "reference_date": reference_date,
            "location": long["unique_id"].astype(str),
            "horizon": long["step"].astype(int) - 1,
            "target": target,
            "target_end_date": long["ds"],
            "output_type": "quantile",
            "output_type_id": long["q"].astype(float),
            "value": long["value"].astype(float),
        }
    ).sort_values(["location", "horizon", "output_type_id"], ignore_index=True)


def write_hub_forecasts(rows: pd.DataFrame, out_dir: Path, model: str) -> Path:
    """Write one reference date's rows to ``out_dir/model-output/<model>/<date>-<model>.csv``."""
    dates = rows["reference_date"].unique()
    if len(dates) != 1:
        raise ForecastError(f"one file holds one reference date; got {len(dates)}")
    date = pd.Timestamp(dates[0]).strftime("%Y-%m-%d")
    folder = out_dir / "model-output" / model
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{date}-{model}.csv"
    out = rows[HUB_COLUMNS].copy()
    out["reference_date"] = date
    # Levels as the hubs write them ("0.01", "0.5"), not with the values' fixed decimals.
    out["output_type_id"] = [f"{float(q):g}" for q in out["output_type_id"]]
    out["target_end_date"] = pd.to_datetime(out["target_end_date"]).dt.strftime("%Y-%m-%d")
    out.to_csv(file, index=False, float_format="%.4f")
    return file
