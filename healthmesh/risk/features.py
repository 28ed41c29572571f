"""Covariates built set-based in SQL over the CDM, then gathered into a scipy sparse matrix.

For each row ``(row_id, person_id, index_date)`` of ``hm_rows``: age and age group, gender; presence
of each condition, drug, procedure, measurement and observation concept in look-back windows ending
on the index date (e.g. 365 and 30 days) and, for conditions, any time before; the latest value of
the key labs and vitals; counts of visits by type. Feature names are stable strings
(``condition:201826:365d``, ``value:LOINC:4548-4``) so a model trained at one hub reads the same
columns at another, and one patient's features come from the very same SQL (``hm_rows`` of one row).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from healthmesh.cdm import HubDatabase
from healthmesh.risk.tasks import FeatureSettings

__all__ = [
    "build_features",
    "collect_features",
    "feature_sql",
    "load_rows",
    "prepare_features",
    "resolve_value_keys",
]

_DOMAIN_COLUMNS = {
    "condition": ("condition_occurrence", "condition_concept_id", "condition_start_date", None),
    "drug": ("drug_exposure", "drug_concept_id", "drug_exposure_start_date", None),
    "procedure": ("procedure_occurrence", "procedure_concept_id", "procedure_date", None),
    "measurement": ("measurement", "measurement_concept_id", "measurement_date", None),
    "observation": ("observation", "observation_concept_id", "observation_date", "value_as_concept_id"),
}


def _text(column: str) -> str:
    return f"CAST({column} AS VARCHAR)"


def resolve_value_keys(db: HubDatabase, settings: FeatureSettings) -> pd.DataFrame:
    """``concept_id, key`` for the latest-value features, looked up by code in the concept table and the map."""
    wanted = pd.DataFrame(
        [(v.vocabulary_id, v.concept_code) for v in settings.latest_values],
        columns=["vocabulary_id", "concept_code"],
    )
    if wanted.empty:
        return pd.DataFrame({"concept_id": pd.Series(dtype="int64"), "key": pd.Series(dtype="object")})
    db.con.register("hm_wanted_values", wanted)
    try:
        has_map = "hm_concept_map" in db.tables()
        mapped = (
            " UNION SELECT m.concept_id, w.vocabulary_id || ':' || w.concept_code AS key FROM hm_wanted_values w "
            "JOIN hm_concept_map m ON m.vocabulary_id = w.vocabulary_id AND m.concept_code = w.concept_code "
            "WHERE m.concept_id IS NOT NULL AND m.concept_id <> 0"
            if has_map
            else ""
        )
        return db.con.execute(
            "SELECT DISTINCT concept_id, key FROM (SELECT c.concept_id, w.vocabulary_id || ':' || w.concept_code AS key "
            "FROM hm_wanted_values w JOIN concept c ON c.vocabulary_id = w.vocabulary_id "
            f"AND c.concept_code = w.concept_code{mapped}) k ORDER BY key, concept_id"
        ).df()
    finally:
        db.con.unregister("hm_wanted_values")


def feature_sql(settings: FeatureSettings) -> str:
    """One UNION ALL query of ``row_id, name, value`` over ``hm_rows`` and ``hm_value_keys``."""
    parts = [
        "SELECT r.row_id, 'age' AS name, CAST(year(r.index_date) - p.year_of_birth AS DOUBLE) AS value "
        "FROM hm_rows r JOIN person p ON p.person_id = r.person_id",
        f"SELECT r.row_id, 'gender:' || {_text('p.gender_concept_id')} AS name, 1.0 AS value "
        "FROM hm_rows r JOIN person p ON p.person_id = r.person_id",
    ]
    if settings.age_group_years > 0:
        width = int(settings.age_group_years)
        low = f"CAST(floor((year(r.index_date) - p.year_of_birth) / {width}) * {width} AS BIGINT)"
        parts.append(
            f"SELECT r.row_id, 'age_group:' || {_text(low)} || '-' || {_text(f'{low} + {width - 1}')} AS name, "
            "1.0 AS value FROM hm_rows r JOIN person p ON p.person_id = r.person_id"
        )
    windows = sorted({int(w) for w in settings.windows_days if w > 0})
    window_values = ", ".join(f"({w})" for w in windows)
    for domain in settings.domains:
        table, concept, date, value_concept = _DOMAIN_COLUMNS[domain]
        label = (
            f"'{domain}:' || {_text('t.' + concept)} || '=' || {_text(f'coalesce(t.{value_concept}, 0)')}"
            if value_concept
            else f"'{domain}:' || {_text('t.' + concept)}"
        )
        if windows:
            parts.append(
                f"SELECT DISTINCT r.row_id, {label} || ':' || {_text('w.days')} || 'd' AS name, 1.0 AS value "
                f"FROM hm_rows r JOIN {table} t ON t.person_id = r.person_id "
                f"JOIN (VALUES {window_values}) w(days) ON t.{date} <= r.index_date "
                f"AND t.{date} >= r.index_date - w.days WHERE t.{concept} <> 0"
            )
        if settings.history and domain == "condition":
            parts.append(
                f"SELECT DISTINCT r.row_id, {label} || ':any' AS name, 1.0 AS value "
                f"FROM hm_rows r JOIN {table} t ON t.person_id = r.person_id "
                f"WHERE t.{date} <= r.index_date AND t.{concept} <> 0"
            )
    if settings.latest_values:
        # Latest value per key; ties on one day go to the larger value, never to row ids (those differ by
        # source). arg_max over (date, value) does it in one aggregate, no window sort.
        parts.append(
            "SELECT r.row_id, 'value:' || k.key AS name, "
            "CAST(arg_max(m.value_as_number, (m.measurement_date, m.value_as_number)) AS DOUBLE) AS value "
            "FROM hm_rows r JOIN measurement m ON m.person_id = r.person_id "
            "JOIN hm_value_keys k ON k.concept_id = m.measurement_concept_id "
            "WHERE m.value_as_number IS NOT NULL AND m.measurement_date <= r.index_date "
            f"AND m.measurement_date >= r.index_date - {int(settings.latest_lookback_days)} GROUP BY r.row_id, k.key"
        )
    if settings.visit_count_days > 0:
        parts.append(
            f"SELECT r.row_id, 'visits:' || {_text('v.visit_concept_id')} || ':{int(settings.visit_count_days)}d' AS name, "
            "CAST(count(*) AS DOUBLE) AS value FROM hm_rows r JOIN visit_occurrence v ON v.person_id = r.person_id "
            f"WHERE v.visit_start_date <= r.index_date AND v.visit_start_date >= r.index_date - {int(settings.visit_count_days)} "
            "GROUP BY r.row_id, v.visit_concept_id"
        )
    return "\nUNION ALL\n".join(parts)


def load_rows(db: HubDatabase, rows: pd.DataFrame) -> None:
    """Put ``row_id, person_id, index_date`` into the temp table ``hm_rows`` that the feature SQL reads."""
    frame = rows[["row_id", "person_id", "index_date"]].copy()
    frame["index_date"] = pd.to_datetime(frame["index_date"]).dt.date
    db.con.register("hm_rows_frame", frame)
    try:
        db.con.execute(
            "CREATE OR REPLACE TEMP TABLE hm_rows AS SELECT CAST(row_id AS BIGINT) AS row_id, "
            "CAST(person_id AS BIGINT) AS person_id, CAST(index_date AS DATE) AS index_date FROM hm_rows_frame"
        )
    finally:
        db.con.unregister("hm_rows_frame")


def prepare_features(db: HubDatabase, settings: FeatureSettings, names: Sequence[str] | None = None) -> None:
    """Create the lookup tables the feature SQL reads: ``hm_value_keys`` and, for known columns, ``hm_feat_index``."""
    keys = resolve_value_keys(db, settings)
    db.con.register("hm_value_keys_frame", keys)
    try:
        db.con.execute("CREATE OR REPLACE TEMP TABLE hm_value_keys AS SELECT * FROM hm_value_keys_frame")
    finally:
        db.con.unregister("hm_value_keys_frame")
    if names is not None:
        index = pd.DataFrame({"name": list(names), "col": np.arange(len(names), dtype=np.int64)})
        db.con.register("hm_feat_index_frame", index)
        try:
            db.con.execute("CREATE OR REPLACE TEMP TABLE hm_feat_index AS SELECT * FROM hm_feat_index_frame")
        finally:
            db.con.unregister("hm_feat_index_frame")


def collect_features(
    db: HubDatabase, settings: FeatureSettings, n_rows: int, n_columns: int
) -> sp.csr_matrix:
    """One query: the feature SQL over ``hm_rows`` joined to ``hm_feat_index`` (see ``prepare_features``)."""
    cells = db.con.execute(
        f"SELECT f.row_id, i.col, f.value FROM ({feature_sql(settings)}) f JOIN hm_feat_index i ON i.name = f.name"
    ).fetchnumpy()
    return sp.csr_matrix(
        (np.asarray(cells["value"], dtype=float), (np.asarray(cells["row_id"]), np.asarray(cells["col"]))),
        shape=(n_rows, n_columns),
    )


def build_features(
    db: HubDatabase,
    settings: FeatureSettings,
    n_rows: int,
    names: Sequence[str] | None = None,
) -> tuple[sp.csr_matrix, list[str]]:
    """The covariate matrix of the rows in ``hm_rows`` (row i = ``row_id`` i).

    With ``names`` None the columns are every covariate seen in at least ``settings.min_persons`` rows
    (training); otherwise exactly ``names``, in order (validation and scoring: unseen covariates drop out).
    """
    if names is not None:
        prepare_features(db, settings, names)
        return collect_features(db, settings, n_rows, len(names)), list(names)
    prepare_features(db, settings)
    db.con.execute(f"CREATE OR REPLACE TEMP TABLE hm_feat_long AS {feature_sql(settings)}")
    learned = [
        row[0]
        for row in db.con.execute(
            "SELECT name FROM hm_feat_long GROUP BY name HAVING count(DISTINCT row_id) >= ? ORDER BY name",
            [int(settings.min_persons)],
        ).fetchall()
    ]
    prepare_features(db, settings, learned)
    cells = db.con.execute(
        "SELECT f.row_id, i.col, f.value FROM hm_feat_long f JOIN hm_feat_index i ON i.name = f.name"
    ).fetchnumpy()
    db.con.execute("DROP TABLE IF EXISTS hm_feat_long")
    matrix = sp.csr_matrix(
        (np.asarray(cells["value"], dtype=float), (np.asarray(cells["row_id"]), np.asarray(cells["col"]))),
        shape=(n_rows, len(learned)),
    )
    return matrix, learned
