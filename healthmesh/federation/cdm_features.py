"""Rows for federated training and validation on a hub's CDM.

A job's ``risk-task`` names a task of ``healthmesh.risk`` (``t2dm-3y``, ``ckd-3y``, ``mi-stroke-5y`` or a
task file; ``diabetes`` means ``t2dm-3y``): its population and covariates come from the risk package's
own cohort and feature SQL, so a federated model sees exactly what a hub-local one would. The
covariate columns each hub learns (those seen in at least the task's ``min_persons``) are joined
by the coordinator's preprocessing step; a column a hub lacks counts as missing there.

``diabetes-onset-5y`` is the federation's own minimal task, which needs only person,
observation_period, condition_occurrence, measurement and observation rows. Index date: one year after the start of a person's first observation period (that year is the
look-back window). Features from the look-back year: age at index, male sex, the last BMI,
systolic blood pressure, fasting glucose, LDL and total cholesterol, essential hypertension before
index, a smoking-status observation. Outcome: a type 2 diabetes condition (or a descendant concept)
within ``horizon_years`` after index. Persons with diabetes on or before index are left out
(prevalent cases), as are persons observed for less than the look-back year.

The SQL is the hub's own; the rows stay in the ClientApp's process.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from healthmesh.errors import FederationError

__all__ = ["DEFAULT_RISK_TASK", "DIABETES_TASK", "OWN_TASK", "cdm_training_frame"]

DIABETES_TASK = {
    "outcome_concept_id": 201826,  # type 2 diabetes mellitus (SNOMED 44054006)
    "hypertension_concept_id": 320128,  # essential hypertension (SNOMED 59621000)
    "measurements": {
        "bmi": 3038553,  # LOINC 39156-5
        "sbp": 3004249,  # LOINC 8480-6
        "glucose": 3000483,  # LOINC 2339-0
        "ldl": 3009966,  # LOINC 18262-6
        "cholesterol": 3027114,  # LOINC 2093-3
    },
    "smoking_concept_id": 43054909,  # LOINC 72166-2 tobacco smoking status (observation)
}
MEASUREMENT_LOINC = {
    "bmi": "39156-5",
    "sbp": "8480-6",
    "glucose": "2339-0",
    "ldl": "18262-6",
    "cholesterol": "2093-3",
}


def _measurement_ids(hub: Any) -> dict[str, int]:
    """Concept ids of the task's LOINC codes in this hub's vocabulary (fallback: the usual ids)."""
    rows = hub.rows(
        "SELECT concept_code, concept_id FROM concept WHERE vocabulary_id = 'LOINC' AND concept_code IN (SELECT unnest($codes))",
        {"codes": list(MEASUREMENT_LOINC.values())},
    )
    by_code = {str(code): int(cid) for code, cid in rows}
    defaults: dict[str, int] = DIABETES_TASK["measurements"]  # type: ignore[assignment]
    return {name: by_code.get(code, defaults[name]) for name, code in MEASUREMENT_LOINC.items()}


DEFAULT_RISK_TASK = "t2dm-3y"
RISK_TASK_ALIASES = {"diabetes": "t2dm-3y"}
OWN_TASK = "diabetes-onset-5y"


def cdm_training_frame(db: Path, job: Mapping[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """Features and 0/1 labels of the job's ``risk-task`` on one hub's CDM (read-only)."""
    name = str(job.get("risk-task") or DEFAULT_RISK_TASK)
    if name == OWN_TASK:
        return _own_diabetes_frame(db, job)
    return _risk_task_frame(db, RISK_TASK_ALIASES.get(name, name))


def _risk_task_frame(db: Path, name: str) -> tuple[pd.DataFrame, np.ndarray]:
    from healthmesh.errors import ModelError
    from healthmesh.federation.cdm_tasks import open_hub_read_only
    from healthmesh.risk.tasks import load_task
    from healthmesh.risk.train import task_data

    try:
        task = load_task(name)
        with open_hub_read_only(str(db)) as hub:
            data = task_data(hub, task)
    except ModelError as error:
        # The risk package's messages name tasks, cohorts and counts, never rows.
        raise FederationError(f"risk task {name!r}: {error}") from None
    matrix = data.matrix.toarray() if hasattr(data.matrix, "toarray") else np.asarray(data.matrix)
    return pd.DataFrame(matrix, columns=list(data.names), dtype=np.float64), data.y.astype(np.int8)


def _own_diabetes_frame(db: Path, job: Mapping[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """The federation's own type 2 diabetes onset rows (see the module docstring)."""
    from healthmesh.federation.cdm_tasks import open_hub_read_only

    horizon = int(job.get("horizon-years", 5))
    with open_hub_read_only(str(db)) as hub:
        ids = _measurement_ids(hub)
        measurement_columns = ",\n".join(
            f"""(SELECT m.value_as_number FROM measurement m
                 WHERE m.person_id = c.person_id AND m.measurement_concept_id = {int(cid)}
                   AND m.value_as_number IS NOT NULL
                   AND m.measurement_date >= c.start_date AND m.measurement_date < c.index_date
                 ORDER BY m.measurement_date DESC LIMIT 1) AS {name}"""
            for name, cid in ids.items()
        )
        sql = f"""
        WITH outcome_set AS (
            SELECT descendant_concept_id AS concept_id FROM concept_ancestor
            WHERE ancestor_concept_id = {DIABETES_TASK["outcome_concept_id"]}
            UNION SELECT {DIABETES_TASK["outcome_concept_id"]}
        ),
        base AS (
            SELECT op.person_id, min(op.observation_period_start_date) AS start_date,
                   max(op.observation_period_end_date) AS end_date
            FROM observation_period op GROUP BY op.person_id
        ),
        cohort AS (
            SELECT b.person_id, b.start_date, b.start_date + INTERVAL 365 DAY AS index_date, b.end_date
            FROM base b WHERE b.end_date > b.start_date + INTERVAL 365 DAY
        ),
        first_outcome AS (
            SELECT person_id, min(condition_start_date) AS onset FROM condition_occurrence
            WHERE condition_concept_id IN (SELECT concept_id FROM outcome_set) GROUP BY person_id
        )
        SELECT
            year(c.index_date) - p.year_of_birth AS age,
            CASE WHEN p.gender_concept_id = 8507 THEN 1.0 WHEN p.gender_concept_id = 8532 THEN 0.0 END AS male,
            {measurement_columns},
            CASE WHEN EXISTS (
                SELECT 1 FROM condition_occurrence h WHERE h.person_id = c.person_id
                  AND h.condition_concept_id = {DIABETES_TASK["hypertension_concept_id"]}
                  AND h.condition_start_date < c.index_date) THEN 1.0 ELSE 0.0 END AS hypertension,
            CASE WHEN EXISTS (
                SELECT 1 FROM observation o WHERE o.person_id = c.person_id
                  AND o.observation_concept_id = {DIABETES_TASK["smoking_concept_id"]}
                  AND o.observation_date < c.index_date) THEN 1.0 ELSE 0.0 END AS smoking_recorded,
            CASE WHEN f.onset IS NOT NULL AND f.onset > c.index_date
                  AND f.onset <= c.index_date + INTERVAL {horizon} YEAR THEN 1 ELSE 0 END AS outcome
        FROM cohort c
        JOIN person p USING (person_id)
        LEFT JOIN first_outcome f USING (person_id)
        WHERE f.onset IS NULL OR f.onset > c.index_date
        ORDER BY c.person_id
        """
        frame = hub.df(sql)
    if frame.empty:
        raise FederationError(f"hub {db} has no person observed for a year or more; nothing to train on")
    y = frame.pop("outcome").to_numpy(dtype=np.int8)
    X = frame.astype(float)
    return X, y
