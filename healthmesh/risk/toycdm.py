"""A small, fast, set-based population in a hub CDM whose risk factors drive disease onset.

For tests and benchmarks of the risk domain only (the platform's full generator lives in
``healthmesh.ingest``). Each person has yearly check-ups with BMI, blood pressure, HbA1c and glucose;
type 2 diabetes, hypertension, myocardial infarction, stroke and chronic kidney disease start with
yearly probabilities that rise with those values, so models have real signal.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from healthmesh.cdm import HubDatabase

__all__ = ["CONCEPTS", "populate_toy_cdm"]

CONCEPTS = {
    "male": 8507,
    "female": 8532,
    "outpatient": 9202,
    "t2dm": 201826,
    "hypertension": 320128,
    "mi": 4329847,
    "stroke": 381316,
    "ckd3": 443597,
    "hba1c": 3004410,
    "glucose": 3000483,
    "sbp": 3004249,
    "bmi": 3038553,
    "smoking": 43054909,
    "metformin": 40163924,
    "lisinopril": 19080128,
}
_EHR = 32817  # type concept "EHR"
_START_YEAR = 2012
_YEARS = 12


def _insert(db: HubDatabase, table: str, frame: pd.DataFrame) -> None:
    db.con.register("hm_toy_frame", frame)
    try:
        columns = ", ".join(frame.columns)
        db.con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM hm_toy_frame")
    finally:
        db.con.unregister("hm_toy_frame")


def _dates(year: np.ndarray, day: np.ndarray) -> np.ndarray:
    base = np.array([np.datetime64(f"{y}-01-01") for y in range(_START_YEAR - 1, _START_YEAR + _YEARS + 1)])
    return base[year - (_START_YEAR - 1)] + day.astype("timedelta64[D]")


def populate_toy_cdm(db: HubDatabase, n_persons: int, seed: int = 0, id_offset: int = 0) -> dict[str, int]:
    """Add ``n_persons`` people with twelve years of yearly check-ups; returns row counts per table."""
    rng = np.random.default_rng(seed)
    pid = np.arange(1, n_persons + 1, dtype=np.int64) + id_offset
    male = rng.random(n_persons) < 0.48
    birth = rng.integers(1940, 1986, n_persons)
    bmi0 = rng.normal(25.5, 4.0, n_persons)
    sbp0 = rng.normal(118, 12, n_persons) + 0.35 * (2012 - birth - 45)
    hba1c0 = rng.normal(5.4, 0.35, n_persons) + 0.05 * (bmi0 - 25)
    smoker = rng.random(n_persons) < 0.22
    visit_day = rng.integers(0, 330, n_persons)

    _insert(
        db,
        "person",
        pd.DataFrame(
            {
                "person_id": pid,
                "gender_concept_id": np.where(male, CONCEPTS["male"], CONCEPTS["female"]),
                "year_of_birth": birth,
                "race_concept_id": 0,
                "ethnicity_concept_id": 0,
            }
        ),
    )
    _insert(
        db,
        "observation_period",
        pd.DataFrame(
            {
                "observation_period_id": pid,
                "person_id": pid,
                "observation_period_start_date": date(_START_YEAR - 1, 1, 1),
                "observation_period_end_date": date(_START_YEAR + _YEARS - 1, 12, 31),
                "period_type_concept_id": _EHR,
            }
        ),
    )

    years = np.arange(_YEARS)
    grid_pid = np.repeat(pid, _YEARS)
    grid_year = np.tile(years, n_persons) + _START_YEAR
    idx = np.repeat(np.arange(n_persons), _YEARS)
    t = np.tile(years, n_persons)
    age = grid_year - birth[idx]
    bmi = bmi0[idx] + 0.15 * t + rng.normal(0, 0.6, len(idx))
    sbp = sbp0[idx] + 0.8 * t + rng.normal(0, 6, len(idx))
    hba1c = hba1c0[idx] + 0.03 * t + 0.02 * (bmi - 25) + rng.normal(0, 0.12, len(idx))
    glucose = 18 * hba1c - 5 + rng.normal(0, 6, len(idx))
    visit_date = _dates(grid_year, visit_day[idx])

    def onset(logit: np.ndarray) -> np.ndarray:
        """Year index of first onset per person (or -1), from yearly probabilities."""
        happens = rng.random(len(logit)) < 1 / (1 + np.exp(-logit))
        first = np.full(n_persons, -1)
        rows = np.flatnonzero(happens)
        persons, first_rows = np.unique(idx[rows], return_index=True)
        first[persons] = t[rows[first_rows]]
        return first

    htn = onset(-4.0 + 0.08 * (sbp - 120) + 0.03 * (age - 50))
    dm = onset(-3.8 + 3.0 * (hba1c - 5.7) + 0.08 * (bmi - 25) + 0.02 * (age - 50))
    has_dm = (dm[idx] >= 0) & (t >= dm[idx])
    has_htn = (htn[idx] >= 0) & (t >= htn[idx])
    cvd_logit = (
        -5.0 + 0.07 * (age - 55) + 0.035 * (sbp - 125) + 0.8 * smoker[idx] + 0.4 * male[idx] + 0.6 * has_dm
    )
    mi = onset(cvd_logit)
    stroke = onset(cvd_logit - 0.3)
    ckd = onset(-4.5 + 1.2 * has_dm + 0.8 * has_htn + 0.05 * (age - 55) + 0.04 * (sbp - 125))

    _insert(
        db,
        "visit_occurrence",
        pd.DataFrame(
            {
                "visit_occurrence_id": np.arange(len(idx), dtype=np.int64) + id_offset * _YEARS + 1,
                "person_id": grid_pid,
                "visit_concept_id": CONCEPTS["outpatient"],
                "visit_start_date": visit_date,
                "visit_end_date": visit_date,
                "visit_type_concept_id": _EHR,
            }
        ),
    )
    labs = []
    for name, values in (("bmi", bmi), ("sbp", sbp), ("hba1c", hba1c), ("glucose", glucose)):
        labs.append(
            pd.DataFrame(
                {
                    "person_id": grid_pid,
                    "measurement_concept_id": CONCEPTS[name],
                    "measurement_date": visit_date,
                    "value_as_number": np.round(values, 2),
                }
            )
        )
    measurement = pd.concat(labs, ignore_index=True)
    measurement.insert(0, "measurement_id", np.arange(len(measurement), dtype=np.int64) + id_offset * 100 + 1)
    measurement["measurement_type_concept_id"] = _EHR
    _insert(db, "measurement", measurement)

    smoking = pd.DataFrame(
        {
            "observation_id": pid,
            "person_id": pid,
            "observation_concept_id": CONCEPTS["smoking"],
            "observation_date": _dates(np.full(n_persons, _START_YEAR), visit_day),
            "value_as_concept_id": np.where(smoker, 4298794, 4222303),  # smoker / never smoker
            "observation_type_concept_id": _EHR,
        }
    )
    _insert(db, "observation", smoking)

    conditions = []
    for name, first in (("hypertension", htn), ("t2dm", dm), ("mi", mi), ("stroke", stroke), ("ckd3", ckd)):
        who = np.flatnonzero(first >= 0)
        conditions.append(
            pd.DataFrame(
                {
                    "person_id": pid[who],
                    "condition_concept_id": CONCEPTS[name],
                    "condition_start_date": _dates(first[who] + _START_YEAR, visit_day[who]),
                }
            )
        )
    condition = pd.concat(conditions, ignore_index=True)
    condition.insert(
        0, "condition_occurrence_id", np.arange(len(condition), dtype=np.int64) + id_offset * 10 + 1
    )
    condition["condition_type_concept_id"] = _EHR
    _insert(db, "condition_occurrence", condition)

    drugs = []
    for name, first in (("metformin", dm), ("lisinopril", htn)):
        who = np.flatnonzero(first >= 0)
        start = _dates(first[who] + _START_YEAR, visit_day[who] + 7)
        drugs.append(
            pd.DataFrame(
                {
                    "person_id": pid[who],
                    "drug_concept_id": CONCEPTS[name],
                    "drug_exposure_start_date": start,
                    "drug_exposure_end_date": start + np.timedelta64(90, "D"),
                }
            )
        )
    drug = pd.concat(drugs, ignore_index=True)
    drug.insert(0, "drug_exposure_id", np.arange(len(drug), dtype=np.int64) + id_offset * 10 + 1)
    drug["drug_type_concept_id"] = _EHR
    _insert(db, "drug_exposure", drug)
    return db.table_counts(
        ["person", "visit_occurrence", "measurement", "condition_occurrence", "drug_exposure", "observation"]
    )
