"""What a hub computes on its own CDM for the network: concept-set counts and model validation.

Both run inside the hub's ClientApp and return only aggregates that passed the hub's release path.
Counts go through its ``Release`` keyed by their person sets (the total by all persons found, each
sex x age-band cell by its own persons), so A, B and A-or-B totals carry independent noise that no
sum or difference removes; withheld counts (and the complementary cells that would reveal them)
travel as -1 (``SUPPRESSED``). Validation metrics are withheld when either outcome class has fewer
persons than the minimum.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from healthmesh.errors import CDMError, FederationError
from healthmesh.federation.guard import SUPPRESSED
from healthmesh.federation.logreg import LogisticParams, predict_proba, roc_auc
from healthmesh.federation.preprocess import AgreedPreprocessor
from healthmesh.privacy.release import Release

if TYPE_CHECKING:
    from healthmesh.cdm import HubDatabase

__all__ = [
    "AGE_BANDS",
    "EVENT_TABLES",
    "concept_counts",
    "hub_concept_counts",
    "hub_validation_metrics",
    "open_hub_read_only",
]

# (table, concept column, person column, date column) searched for a concept set.
EVENT_TABLES = (
    ("condition_occurrence", "condition_concept_id", "condition_start_date"),
    ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    ("measurement", "measurement_concept_id", "measurement_date"),
    ("observation", "observation_concept_id", "observation_date"),
    ("procedure_occurrence", "procedure_concept_id", "procedure_date"),
)
AGE_BANDS = ((0, 18, "0-17"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+"))
SEX_LABELS = {8507: "male", 8532: "female"}


def open_hub_read_only(db: str) -> Any:
    """The hub's CDM, opened read-only (the ClientApp never writes)."""
    from healthmesh.cdm import connect

    if not db:
        raise FederationError("this SuperNode has no 'db' in its node config; start it with db=PATH")
    if not Path(db).is_file():
        raise FederationError(f"hub database {db!r} not found; check the SuperNode's db=PATH")
    try:
        return connect(db, read_only=True)
    except CDMError as error:
        raise FederationError(f"cannot open the hub database read-only: {error}") from None


def _concept_ids(job: Mapping[str, Any]) -> list[int]:
    raw = job.get("concept_ids")
    if not raw or not isinstance(raw, list):
        raise FederationError(f"a count needs a non-empty list 'concept_ids'; got {raw!r}")
    try:
        return sorted({int(c) for c in raw})
    except (TypeError, ValueError):
        raise FederationError(f"concept ids must be integers; got {raw!r}") from None


def _cohort_sql(include_descendants: bool, tables: set[str]) -> str:
    concept_set = (
        "SELECT descendant_concept_id AS concept_id FROM concept_ancestor "
        "WHERE ancestor_concept_id IN (SELECT unnest($ids)) "
        "UNION SELECT unnest($ids)"
        if include_descendants
        else "SELECT unnest($ids) AS concept_id"
    )
    events = " UNION ALL ".join(
        f"SELECT person_id, {date} AS event_date FROM {table} WHERE {column} IN (SELECT concept_id FROM concept_set)"
        for table, column, date in EVENT_TABLES
        if table in tables
    )
    return f"""
        WITH concept_set AS ({concept_set}),
        events AS ({events}),
        first_event AS (SELECT person_id, min(event_date) AS index_date FROM events GROUP BY person_id)
        SELECT f.person_id, p.gender_concept_id AS gender, year(f.index_date) - p.year_of_birth AS age
        FROM first_event f JOIN person p USING (person_id)
    """


def hub_concept_counts(db: str, job: Mapping[str, Any], release: Release) -> tuple[dict[str, int], int]:
    """Persons with any event in the concept set, in total and by sex x age band at first event.

    Returns the released counts (withheld ones as -1) and the number of persons the query touched.
    """
    with open_hub_read_only(db) as hub:
        return concept_counts(hub, job, release)


def concept_counts(hub: HubDatabase, job: Mapping[str, Any], release: Release) -> tuple[dict[str, int], int]:
    """``hub_concept_counts`` on a database already open (the hub service's own connection)."""
    ids = _concept_ids(job)
    persons = hub.df(_cohort_sql(bool(job.get("include_descendants", True)), hub.tables()), {"ids": ids})
    total = len(persons)
    sex = persons["gender"].map(lambda g: SEX_LABELS.get(int(g), "other") if pd.notna(g) else "other")
    band = pd.Series(["unknown"] * total, dtype=object)
    for low, high, label in AGE_BANDS:
        band[(persons["age"] >= low) & (persons["age"] < high)] = label
    cells = pd.DataFrame(
        [(s, b) for s in ("female", "male", "other") for b in [*(a[2] for a in AGE_BANDS), "unknown"]],
        columns=["sex", "age_band"],
    )
    record_keys = release.record_keys(persons["person_id"].to_numpy(dtype=np.int64))
    groups = (
        pd.DataFrame({"sex": sex.to_numpy(), "age_band": band.to_numpy()})
        .groupby(["sex", "age_band"])
        .indices
    )
    pairs = list(zip(cells["sex"], cells["age_band"], strict=True))
    cells["count"] = [len(groups.get(pair, ())) for pair in pairs]
    # Each cell's key: the XOR of its persons' record keys (0 for an empty cell).
    cells["key"] = [
        int(np.bitwise_xor.reduce(record_keys[groups[pair]])) if pair in groups else 0 for pair in pairs
    ]
    if not job.get("characterize", True):
        cells = cells.iloc[0:0]
    released = release.table(cells, "count", ["sex", "age_band"], key_col="key")
    counts: dict[str, int] = {}
    total_released = release.count(total, int(np.bitwise_xor.reduce(record_keys)) if total else 0)
    counts["persons"] = SUPPRESSED if total_released is None else int(total_released)
    for sex_label, age_band, value in zip(
        released["sex"], released["age_band"], released["count"], strict=True
    ):
        counts[f"sex={sex_label}|age={age_band}"] = SUPPRESSED if pd.isna(value) else int(value)
    return counts, total


def hub_validation_metrics(
    node_config: Mapping[str, Any],
    job: Mapping[str, Any],
    params: LogisticParams,
    spec: AgreedPreprocessor,
    release: Release | int,
) -> tuple[dict[str, float], int]:
    """Discrimination and calibration of a given model on all of this hub's rows (metrics only).

    Every figure is released: ``num-examples`` and ``positives`` through the hub's release path (cell
    keys: the rows behind them, by position in the hub's row list, as in training), -1 when withheld;
    the observed rate from those released counts (so that rate x n gives no exact count back); the
    other metrics rounded to three decimals (a full float is an exact fraction of counts). With fewer
    than the minimum cell of persons in an outcome class, or a count the release path withholds, only
    the released counts travel. ``release`` may be the minimum cell: the release path then comes
    from the node config's key file (``policing.hub_release``). Also returns the exact row count,
    for the hub's own accounting.
    """
    from healthmesh.federation.sitedata import load_site_rows

    if isinstance(release, int):
        from healthmesh.federation.policing import hub_release

        release = hub_release(node_config, release)
    X, y = load_site_rows(node_config, job)
    y = np.asarray(y).astype(int)
    n, n_pos = len(y), int(np.sum(y))
    rows = np.arange(n, dtype=np.int64)
    shown_n = release.count(n, release.person_key(rows))
    shown_pos = release.count(n_pos, release.person_key(rows[y == 1]))
    metrics: dict[str, float] = {
        "num-examples": float(SUPPRESSED if shown_n is None else shown_n),
        "positives": float(SUPPRESSED if shown_pos is None else shown_pos),
    }
    if min(n_pos, n - n_pos) < release.min_count or shown_n is None or shown_pos is None:
        # Too few persons in an outcome class: a metric over them would describe individuals.
        metrics.update({"withheld": 1.0})
        return metrics, n
    score = predict_proba(params, spec.transform(X))
    p = np.clip(score, 1e-12, 1 - 1e-12)
    metrics.update(
        {
            "withheld": 0.0,
            "auroc": round(roc_auc(y, score), 3),
            "brier": round(float(np.mean((score - y) ** 2)), 3),
            "log-loss": round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 3),
            "observed-rate": round(shown_pos / shown_n, 3),
            "mean-predicted": round(float(np.mean(score)), 3),
        }
    )
    return metrics, n
    p = np.clip(score, 1e-12, 1 - 1e-12)
    metrics.update(
        {
            "withheld": 0.0,
            "positives": float(n_pos),
            "auroc": roc_auc(y, score),
            "brier": float(np.mean((score - y) ** 2)),
            "log-loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
            "observed-rate": float(n_pos / n),
            "mean-predicted": float(np.mean(score)),
        }
    )
    return metrics, n
