"""Named data sources for the backtest and the scorer: FluSight hospital admissions and Korean DS4C.

For FluSight, the global model also learns from auxiliary series: ILINet ILI+ per state (past seasons
only, the COVID-19 pandemic seasons left out) and state populations for rates. They are found beside
the target file (``locations.csv``, ``ilinet/``) unless given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from healthmesh.errors import ForecastError
from healthmesh.forecast.series import read_ds4c_weekly, read_flusight_target, read_ilinet

__all__ = [
    "SOURCES",
    "SourceData",
    "drop_pandemic_seasons",
    "load_source",
    "load_truth",
    "read_populations",
    "truth_with_vintage",
]

SOURCES = ("flusight", "ds4c")
TARGET_NAMES = {"flusight": "wk inc flu hosp", "ds4c": "wk inc covid case"}


@dataclass
class SourceData:
    """The target series and what the models may learn from besides it."""

    target: pd.DataFrame
    target_name: str
    populations: dict[str, float] | None = None
    auxiliary: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()


def drop_pandemic_seasons(df: pd.DataFrame) -> pd.DataFrame:
    """Leave out March 2020 to July 2022, when influenza nearly vanished (not a pattern to learn)."""
    return df[(df["ds"] < "2020-03-01") | (df["ds"] > "2022-07-31")].reset_index(drop=True)


def read_populations(path: str | Path) -> dict[str, float]:
    """FluSight ``locations.csv``: location code -> population."""
    table = pd.read_csv(path, dtype={"location": str})
    if not {"location", "population"} <= set(table.columns):
        raise ForecastError(f"{path}: expected columns location, population (FluSight locations.csv)")
    return {
        str(k): float(v) for k, v in zip(table["location"], table["population"], strict=True) if pd.notna(v)
    }


def _state_codes(locations: Path) -> dict[str, str]:
    table = pd.read_csv(locations, dtype={"location": str})
    return dict(zip(table["location_name"], table["location"], strict=True))


def load_source(
    source: str,
    target_data: Path,
    ilinet: Path | None = None,
    clinical_labs: Path | None = None,
    locations: Path | None = None,
) -> SourceData:
    """Read the target series of ``source`` and its auxiliary inputs (found beside it if not given)."""
    if source not in SOURCES:
        raise ForecastError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "ds4c":
        return SourceData(read_ds4c_weekly(target_data), TARGET_NAMES[source])
    target = read_flusight_target(target_data)
    folder = Path(target_data).parent
    locations = locations or (folder / "locations.csv")
    ilinet = ilinet or (folder / "ilinet" / "ILINet_state.csv.gz")
    clinical_labs = clinical_labs or (folder / "ilinet" / "ICL_NREVSS_Clinical_Labs_state.csv.gz")
    notes = []
    populations = None
    if locations.is_file():
        populations = read_populations(locations)
        notes.append(f"populations from {locations}")
    auxiliary = None
    if ilinet.is_file():
        auxiliary = drop_pandemic_seasons(
            read_ilinet(ilinet, clinical_labs if clinical_labs.is_file() else None)
        )
        if locations.is_file():
            # Name ILINet states by their FIPS code so each state's ILI+ and admissions share a name space.
            codes = _state_codes(locations)
            auxiliary["unique_id"] = "ili:" + auxiliary["unique_id"].map(codes).fillna(auxiliary["unique_id"])
        notes.append(f"ILI+ training series from {ilinet}")
    return SourceData(target, TARGET_NAMES[source], populations, auxiliary, tuple(notes))


def load_truth(path: Path) -> pd.DataFrame:
    """Observed values to score against: a FluSight target file or a DS4C TimeProvince file (weekly)."""
    if not Path(path).is_file():
        raise ForecastError(f"truth file {path} not found")
    columns = set(pd.read_csv(path, nrows=0).columns)
    if "province" in columns:
        return read_ds4c_weekly(path)
    if "location" in columns:
        return read_flusight_target(path)
    raise ForecastError(
        f"{path}: not a FluSight target file nor a DS4C TimeProvince file; columns {sorted(columns)}"
    )


def truth_with_vintage(latest: pd.DataFrame, vintages: dict[pd.Timestamp, pd.DataFrame]) -> pd.DataFrame:
    """Truth as an evaluation at the time saw it: the last vintage, then the latest file after it.

    The official FluSight 2023-24 evaluation scored against data of mid-2024; later revisions (the
    2026 file) move the ensemble's relative WIS from 0.71 to 0.73.
    """
    last = vintages[max(vintages)]
    return pd.concat([last, latest[latest["ds"] > last["ds"].max()]], ignore_index=True)
