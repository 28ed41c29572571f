"""The study population of a task on one hub: target cohort rows labelled by the outcome in time at risk."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from healthmesh.cdm import HubDatabase
from healthmesh.cohorts import build_cohort
from healthmesh.risk.tasks import Task

__all__ = ["age_band", "hub_name", "population_conditions", "task_population"]


def hub_name(db: HubDatabase, given: str | None = None) -> str:
    """The hub's name: given, else the CDM source abbreviation, else the database file's stem."""
    if given:
        return given
    try:
        value = db.scalar("SELECT cdm_source_abbreviation FROM cdm_source LIMIT 1")
    except Exception:  # a CDM without cdm_source rows is still a CDM
        value = None
    if value:
        return str(value)
    path = getattr(db, "path", None)
    return path.stem if path is not None else "hub"


def age_band(age: np.ndarray) -> np.ndarray:
    """Ten-year age bands (``40-49``); 80 and over together."""
    age = np.asarray(age, dtype=int)
    low = np.clip((age // 10) * 10, 0, 80)
    return np.array([f"{a}-{a + 9}" if a < 80 else "80+" for a in low])


def population_conditions(task: Task) -> list[tuple[str, str]]:
    """The task's own attrition steps after its target cohort: (label, SQL condition on hm_population)."""
    conditions = []
    if task.remove_prior_outcomes:
        conditions.append(("no outcome before the time at risk", "NOT prior_outcome"))
    if task.min_time_at_risk_days > 0:
        conditions.append(
            (
                f"outcome in time at risk or at least {task.min_time_at_risk_days} days observed after index",
                f"(label OR observation_end >= index_date + {int(task.min_time_at_risk_days)})",
            )
        )
    return conditions


def task_population(db: HubDatabase, task: Task) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Rows ``row_id, person_id, index_date, label, gender_concept_id, age`` and the attrition that led to them."""
    target = build_cohort(db, task.target(), prefix="hm_target")
    outcome = build_cohort(db, task.outcome(), prefix="hm_outcome")
    start, end = int(task.time_at_risk.start_days), int(task.time_at_risk.end_days)
    db.con.execute(
        "CREATE OR REPLACE TEMP TABLE hm_population AS SELECT t.subject_id AS person_id, "
        "t.cohort_start_date AS index_date, t.observation_end, "
        f"EXISTS (SELECT 1 FROM {outcome.table} o WHERE o.subject_id = t.subject_id "
        f"AND o.cohort_start_date >= t.cohort_start_date + {start} AND o.cohort_start_date <= t.cohort_start_date + {end}) AS label, "
        f"EXISTS (SELECT 1 FROM {outcome.table} o WHERE o.subject_id = t.subject_id "
        f"AND o.cohort_start_date < t.cohort_start_date + {start}) AS prior_outcome "
        f"FROM {target.table} t"
    )
    attrition = [dict(step) | {"cohort": "target"} for step in target.attrition]
    where = "TRUE"
    for label, condition in population_conditions(task):
        where = f"{where} AND {condition}"
        n, persons, outcomes = db.con.execute(
            f"SELECT count(*), count(DISTINCT person_id), count(*) FILTER (WHERE label) FROM hm_population WHERE {where}"
        ).fetchone()  # type: ignore[misc]
        attrition.append(
            {"step": label, "events": int(n), "persons": int(persons), "outcomes": int(outcomes)}
        )
    rows = db.con.execute(
        "SELECT h.person_id, h.index_date, CAST(h.label AS INTEGER) AS label, p.gender_concept_id, "
        "year(h.index_date) - p.year_of_birth AS age FROM hm_population h JOIN person p ON p.person_id = h.person_id "
        f"WHERE {where} ORDER BY h.person_id, h.index_date"
    ).df()
    rows.insert(0, "row_id", np.arange(len(rows), dtype=np.int64))
    return rows, attrition
