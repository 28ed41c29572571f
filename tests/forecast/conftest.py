"""Fixtures for the forecast tests: small generated series and a hub CDM with ILI visits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from healthmesh.cdm import create_hub
from healthmesh.hubkeys import HubKeys
from healthmesh.privacy.release import Release


def hub_release(master: bytes = b"a test hub master secret of 32+ bytes", min_count: int = 5) -> Release:
    """A hub's release path, as the service builds it from its master secret."""
    return Release(HubKeys(master).release, min_count)


def seasonal_counts(weeks: int, peak: float, phase: int, seed: int) -> np.ndarray:
    """A yearly epidemic curve with Poisson noise, as weekly counts."""
    rng = np.random.default_rng(seed)
    t = np.arange(weeks)
    mean = 3 + peak * np.exp(-0.5 * (((t + phase) % 52 - 26) / 4.0) ** 2)
    return rng.poisson(mean).astype(float)


@pytest.fixture
def weekly_series() -> pd.DataFrame:
    """Three regions, 130 weeks ending on Saturdays, seasonal with noise."""
    ds = pd.date_range("2021-01-02", periods=130, freq="7D")
    frames = [
        pd.DataFrame({"unique_id": uid, "ds": ds, "y": seasonal_counts(130, peak, phase, seed)})
        for uid, peak, phase, seed in (("A", 200, 0, 1), ("B", 80, 3, 2), ("C", 30, 6, 3))
    ]
    return pd.concat(frames, ignore_index=True)


def build_ili_hub(path: Path, regions: dict[str, float], weeks: int = 110, start: str = "2022-01-03") -> Path:
    """A hub CDM whose ILI visits follow a seasonal curve per region; returns its path.

    ``regions`` maps a province code (location.state) to its epidemic peak in visits per week.
    """
    db = create_hub(str(path))
    people = 40
    for r, (state, peak) in enumerate(sorted(regions.items())):
        db.execute(
            "INSERT INTO location (location_id, city, state, zip) VALUES (?, ?, ?, ?)",
            [r + 1, f"city{r}", state, "500"],
        )
        db.execute(
            """INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id,
               ethnicity_concept_id, location_id)
               SELECT ? * 1000 + i, CASE WHEN i % 2 = 0 THEN 8507 ELSE 8532 END, 1950 + i, 0, 0, ?
               FROM range(?) t(i)""",
            [r + 1, r + 1, people],
        )
        counts = seasonal_counts(weeks, peak, 3 * r, seed=r).astype(int)
        rows = [(r + 1, w, k) for w, c in enumerate(counts) for k in range(int(c))]
        frame = pd.DataFrame(rows, columns=["region", "week", "k"])
        frame["condition_occurrence_id"] = np.arange(len(frame)) + (r + 1) * 10_000_000
        frame["person_id"] = frame["region"] * 1000 + frame["k"] % people
        frame["condition_start_date"] = pd.Timestamp(start) + pd.to_timedelta(
            frame["week"] * 7 + frame["k"] % 7, unit="D"
        )
        db.con.register("ili_rows", frame)
        db.execute(
            """INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,
               condition_start_date, condition_type_concept_id, condition_source_value)
               SELECT condition_occurrence_id, person_id, 2000000001, CAST(condition_start_date AS DATE),
                      32817, 'HM-ILI' FROM ili_rows"""
        )
        db.con.unregister("ili_rows")
    db.close()
    return path


@pytest.fixture
def ili_hub(tmp_path: Path) -> Path:
    return build_ili_hub(tmp_path / "gwangju.duckdb", {"KR-29": 60.0, "KR-41": 150.0})


def write_flusight_target(
    path: Path, weeks: int = 120, locations: tuple[str, ...] = ("01", "02", "US")
) -> Path:
    """A FluSight-style target file (quoted fields, weekly Saturdays) with seasonal counts."""
    ds = pd.date_range("2021-10-02", periods=weeks, freq="7D")
    frames = []
    for i, loc in enumerate(locations):
        frames.append(
            pd.DataFrame(
                {
                    "date": ds.strftime("%Y-%m-%d"),
                    "location": loc,
                    "location_name": f"place {loc}",
                    "value": seasonal_counts(weeks, 300.0 * (i + 1), 2 * i, seed=10 + i).astype(int),
                    "weekly_rate": 0.0,
                }
            )
        )
    pd.concat(frames).to_csv(path, index=False, quoting=1)
    return path


@pytest.fixture
def flusight_file(tmp_path: Path) -> Path:
    return write_flusight_target(tmp_path / "target-hospital-admissions.csv")
