"""Fixtures for the federation tests: small generated site tables and hub CDMs in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def make_site_table(path: Path, n: int, seed: int, shift: float = 0.0) -> Path:
    """A table with real signal: numeric and text columns, missing values, a 0/1/2 target."""
    rng = np.random.default_rng(seed)
    age = rng.normal(55 + 5 * shift, 9, n).round()
    chol = rng.normal(230, 40, n).round()
    smoker = rng.choice(["never", "former", "current"], n, p=[0.5, 0.3, 0.2])
    logit = 0.08 * (age - 55) + 0.015 * (chol - 230) + np.where(smoker == "current", 1.0, 0.0) + shift
    target = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int) * rng.choice([1, 2], n)
    frame = pd.DataFrame({"age": age, "chol": chol, "smoker": smoker, "target": target})
    frame.loc[rng.random(n) < 0.1, "chol"] = np.nan
    frame.to_csv(path, index=False, na_rep="?")
    return path


@pytest.fixture
def site_tables(tmp_path: Path) -> dict[str, Path]:
    """Two sites with different case mix (160 and 120 rows)."""
    return {
        "north": make_site_table(tmp_path / "north.csv", 160, seed=1, shift=0.0),
        "south": make_site_table(tmp_path / "south.csv", 120, seed=2, shift=0.5),
    }


def build_hub(path: Path, n_persons: int, seed: int) -> Path:
    """A small CDM: persons, a year+ of observation, hypertension / diabetes conditions, measurements."""
    from healthmesh.cdm import create_hub

    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_persons + 1, dtype=np.int64)
    male = rng.random(n_persons) < 0.5
    year_of_birth = rng.integers(1940, 1990, n_persons)
    start = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 365, n_persons), unit="D")
    bmi = rng.normal(27, 4, n_persons)
    risk = 0.25 * (bmi - 27) + 0.04 * (2016 - year_of_birth - 50) - 1.5
    diabetic = rng.random(n_persons) < 1 / (1 + np.exp(-risk))
    person = pd.DataFrame(
        {
            "person_id": ids,
            "gender_concept_id": np.where(male, 8507, 8532),
            "year_of_birth": year_of_birth,
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
        }
    )
    observation_period = pd.DataFrame(
        {
            "observation_period_id": ids,
            "person_id": ids,
            "observation_period_start_date": start.date,
            "observation_period_end_date": (start + pd.Timedelta(days=365 * 6)).date,
            "period_type_concept_id": 32817,
        }
    )
    onset = start + pd.Timedelta(days=365 * 3)
    conditions = pd.DataFrame(
        {
            "condition_occurrence_id": ids[diabetic],
            "person_id": ids[diabetic],
            "condition_concept_id": 201826,
            "condition_start_date": onset[diabetic].date,
            "condition_type_concept_id": 32817,
        }
    )
    measurement = pd.DataFrame(
        {
            "measurement_id": ids,
            "person_id": ids,
            "measurement_concept_id": 3038553,
            "measurement_date": (start + pd.Timedelta(days=100)).date,
            "measurement_type_concept_id": 32817,
            "value_as_number": bmi.round(1),
        }
    )
    db = create_hub(str(path))
    try:
        for table, frame in (
            ("person", person),
            ("observation_period", observation_period),
            ("condition_occurrence", conditions),
            ("measurement", measurement),
        ):
            db.con.register("incoming", frame)
            columns = ", ".join(frame.columns)
            db.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM incoming")
            db.con.unregister("incoming")
    finally:
        db.close()
    return path


@pytest.fixture
def hub_factory(tmp_path: Path) -> Callable[[str, int, int], Path]:
    def make(name: str, n_persons: int, seed: int) -> Path:
        return build_hub(tmp_path / f"{name}.duckdb", n_persons, seed)

    return make
