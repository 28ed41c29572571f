"""Surveillance series in long format (``unique_id, ds, y``) and the readers that produce them.

Every reader ends in :func:`validate_series`, so a malformed file (a bad date, a negative count, a
week given twice) stops with one clear line instead of a silently wrong forecast.
"""

from __future__ import annotations

import io
import re
import tarfile
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from healthmesh.errors import ForecastError

__all__ = [
    "mmwr_week_end",
    "read_ds4c_daily",
    "read_ds4c_weekly",
    "read_flusight_target",
    "read_flusight_vintages",
    "read_ilinet",
    "to_weekly",
    "validate_series",
]

_VINTAGE_NAME = re.compile(r"target-hospital-admissions_(\d{4}-\d{2}-\d{2})\.csv$")


def validate_series(df: pd.DataFrame, source: str = "series") -> pd.DataFrame:
    """Check and normalise a long frame: ``unique_id`` str, ``ds`` datetime, ``y`` float >= 0, unique weeks.

    Rows whose count is blank (not reported) are dropped; text that is not a number is an error.
    """
    missing = {"unique_id", "ds", "y"} - set(df.columns)
    if missing:
        raise ForecastError(f"{source}: missing column(s) {sorted(missing)}; a series needs unique_id, ds, y")
    out = df[["unique_id", "ds", "y"]].copy()
    out["unique_id"] = out["unique_id"].astype(str)
    ds = pd.to_datetime(out["ds"], errors="coerce")
    if ds.isna().any():
        bad = out.loc[ds.isna(), "ds"].iloc[0]
        raise ForecastError(f"{source}: unreadable date {bad!r}; write dates as YYYY-MM-DD")
    out["ds"] = ds.astype("datetime64[ns]")
    # A blank or NA count is a week not reported (NHSN had gaps in 2024): it is left out, not guessed.
    out = out[out["y"].notna()]
    y = pd.to_numeric(out["y"], errors="coerce")
    if y.isna().any():
        bad = out.loc[y.isna(), "y"].iloc[0]
        raise ForecastError(f"{source}: missing or non-numeric count {bad!r}; every week needs a number")
    if (y < 0).any():
        row = out.loc[y < 0].iloc[0]
        raise ForecastError(
            f"{source}: negative count {y[y < 0].iloc[0]} for {row['unique_id']} on {row['ds']:%Y-%m-%d}; counts must be >= 0"
        )
    out["y"] = y.astype(float)
    dup = out.duplicated(["unique_id", "ds"])
    if dup.any():
        row = out.loc[dup].iloc[0]
        raise ForecastError(
            f"{source}: week {row['ds']:%Y-%m-%d} appears twice for {row['unique_id']}; keep one row per series and week"
        )
    return out.sort_values(["unique_id", "ds"]).reset_index(drop=True)


def _read_target_csv(handle: str | Path | io.BytesIO, source: str) -> pd.DataFrame:
    try:
        raw = pd.read_csv(handle, dtype={"location": str})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ForecastError(
            f"{source}: cannot read as CSV ({error}); give a FluSight target-data file"
        ) from error
    needed = {"date", "location", "value"}
    if not needed <= set(raw.columns):
        raise ForecastError(
            f"{source}: columns {sorted(raw.columns)} lack {sorted(needed - set(raw.columns))}; "
            "expected FluSight target data (date, location, value)"
        )
    raw["location"] = raw["location"].str.zfill(2).where(raw["location"] != "US", "US")
    return validate_series(raw.rename(columns={"location": "unique_id", "date": "ds", "value": "y"}), source)


def read_flusight_target(path: str | Path) -> pd.DataFrame:
    """FluSight ``target-hospital-admissions.csv`` as a long frame (one series per location code)."""
    path = Path(path)
    if not path.is_file():
        raise ForecastError(f"target data {path} not found; give the path of target-hospital-admissions.csv")
    return _read_target_csv(path, str(path))


def read_flusight_vintages(path: str | Path) -> dict[pd.Timestamp, pd.DataFrame]:
    """All ``target-hospital-admissions_<date>.csv`` vintages of a folder or a ``.tar.gz``, keyed by as-of date."""
    path = Path(path)
    vintages: dict[pd.Timestamp, pd.DataFrame] = {}
    if path.is_dir():
        for file in sorted(path.rglob("target-hospital-admissions_*.csv")):
            match = _VINTAGE_NAME.search(file.name)
            if match:
                vintages[pd.Timestamp(match.group(1))] = _read_target_csv(file, str(file))
    elif path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                match = _VINTAGE_NAME.search(member.name)
                handle = archive.extractfile(member) if match and member.isfile() else None
                if match and handle is not None:
                    data = io.BytesIO(handle.read())
                    vintages[pd.Timestamp(match.group(1))] = _read_target_csv(data, f"{path}:{member.name}")
    else:
        raise ForecastError(f"vintages {path} is neither a folder nor a .tar.gz; give one of those")
    if not vintages:
        raise ForecastError(f"no target-hospital-admissions_<date>.csv files in {path}")
    return dict(sorted(vintages.items()))


def mmwr_week_end(year: int, week: int) -> date:
    """The Saturday that ends MMWR (CDC epidemiological) week ``week`` of ``year``."""
    jan4 = date(year, 1, 4)
    first_sunday = jan4 - timedelta(days=(jan4.weekday() + 1) % 7)
    return first_sunday + timedelta(days=7 * (week - 1) + 6)


def _read_cdc_fluview(path: Path) -> pd.DataFrame:
    # CDC FluView downloads start with a title line; the header is on line 2.
    try:
        return pd.read_csv(path, skiprows=1, na_values=["X"], low_memory=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ForecastError(f"{path}: cannot read as a CDC FluView CSV ({error})") from error


def read_ilinet(path: str | Path, clinical_labs: str | Path | None = None) -> pd.DataFrame:
    """CDC ILINet (national or state file) as weekly % ILI per region; times % positive when labs given.

    With ``clinical_labs`` (the matching ICL_NREVSS clinical-labs file) the value is ILI+ (% ILI x
    share of specimens positive for influenza), a flu-specific signal; weeks without lab data drop out.
    """
    path = Path(path)
    if not path.is_file():
        raise ForecastError(f"ILINet file {path} not found")
    ili = _read_cdc_fluview(path)
    needed = {"REGION", "YEAR", "WEEK", "%UNWEIGHTED ILI"}
    if not needed <= set(ili.columns):
        raise ForecastError(f"{path}: not an ILINet file; it lacks {sorted(needed - set(ili.columns))}")
    value = ili["% WEIGHTED ILI"].where(ili["% WEIGHTED ILI"].notna(), ili["%UNWEIGHTED ILI"])
    frame = pd.DataFrame(
        {"region": ili["REGION"].astype(str), "year": ili["YEAR"], "week": ili["WEEK"], "y": value}
    )
    if clinical_labs is not None:
        labs = _read_cdc_fluview(Path(clinical_labs))
        labs = labs.rename(columns={"REGION": "region", "YEAR": "year", "WEEK": "week"})
        labs["region"] = labs["region"].astype(str)
        frame = frame.merge(
            labs[["region", "year", "week", "PERCENT POSITIVE"]], on=["region", "year", "week"]
        )
        frame["y"] = frame["y"] * frame["PERCENT POSITIVE"] / 100.0
    frame = frame.dropna(subset=["y"])
    frame["ds"] = [mmwr_week_end(int(y), int(w)) for y, w in zip(frame["year"], frame["week"], strict=True)]
    frame["unique_id"] = frame["region"].where(frame["region"] != "X", "National")
    return validate_series(frame, str(path))


def read_ds4c_daily(path: str | Path, field: str = "confirmed") -> pd.DataFrame:
    """DS4C ``TimeProvince.csv`` (cumulative counts per province) as daily incidence per province.

    A drop in a cumulative count is a correction, not negative incidence: it is taken off later days.
    """
    path = Path(path)
    if not path.is_file():
        raise ForecastError(f"DS4C file {path} not found; give the path of TimeProvince.csv")
    raw = pd.read_csv(path)
    if not {"date", "province", field} <= set(raw.columns):
        raise ForecastError(f"{path}: expected DS4C TimeProvince columns date, province, {field}")
    raw = validate_series(raw.rename(columns={"province": "unique_id", "date": "ds", field: "y"}), str(path))
    # Running maximum turns corrections into zero-incidence days instead of negative ones.
    cumulative = raw.groupby("unique_id")["y"].cummax()
    raw["y"] = cumulative.groupby(raw["unique_id"]).diff().fillna(cumulative)
    return raw


def read_ds4c_weekly(path: str | Path, field: str = "confirmed") -> pd.DataFrame:
    """DS4C provinces as weekly incidence in weeks ending Saturday; the trailing incomplete week is dropped."""
    daily = read_ds4c_daily(path, field)
    return to_weekly(daily)


def to_weekly(daily: pd.DataFrame) -> pd.DataFrame:
    """Sum a daily long frame into weeks ending Saturday, keeping only weeks whose Saturday was observed."""
    week_end = daily["ds"] + pd.to_timedelta((5 - daily["ds"].dt.weekday) % 7, unit="D")
    weekly = daily.assign(ds=week_end).groupby(["unique_id", "ds"], as_index=False)["y"].sum()
    last_day = daily.groupby("unique_id")["ds"].max()
    weekly = weekly[weekly["ds"] <= weekly["unique_id"].map(last_day)]
    return validate_series(weekly, "weekly series")
