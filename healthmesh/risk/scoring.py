"""Scoring with a frozen CDM model: a batch of a hub's persons, or one patient posted as a FHIR Bundle.

One patient's features come from the very same feature SQL as the batch: the Bundle is ingested
into a scratch in-memory CDM (the ingest domain's mapping), and ``hm_rows`` holds that one person.
``BundleScorer`` keeps the model and the scratch CDM warm between requests.
"""

from __future__ import annotations

import json
import secrets
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from healthmesh.cdm import HubDatabase, create_hub
from healthmesh.errors import ModelError
from healthmesh.risk.features import (
    build_features,
    collect_features,
    load_rows,
    prepare_features,
    resolve_value_keys,
)
from healthmesh.risk.modelfile import SafeModel
from healthmesh.risk.patient_features import patient_features
from healthmesh.risk.registry import load_registered
from healthmesh.risk.tasks import load_task

__all__ = ["BundleScorer", "PersonScorer", "person_features", "score_batch", "score_bundle", "score_person"]

# Tables that hold one patient's data in the scratch CDM; emptied before each Bundle.
_PATIENT_TABLES = (
    "person",
    "observation_period",
    "visit_occurrence",
    "visit_detail",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "device_exposure",
    "measurement",
    "observation",
    "death",
    "note",
    "specimen",
    "location",
    "condition_era",
    "drug_era",
)


def _model(model: SafeModel | Path | str, registry: Path | None = None) -> SafeModel:
    loaded = model if isinstance(model, SafeModel) else load_registered(Path(model), registry)
    if loaded.input_kind != "sparse":
        raise ModelError(
            "this model was fitted on a flat table; score it on rows of that table, not on a CDM"
        )
    return loaded


def _as_of_dates(db: HubDatabase, person_ids: list[int] | None, as_of: date | None) -> pd.DataFrame:
    """``person_id, index_date``: the given date, else each person's last observed day."""
    where = ""
    if person_ids is not None:
        ids = ", ".join(str(int(p)) for p in person_ids) or "NULL"
        where = f" WHERE p.person_id IN ({ids})"
    if as_of is not None:
        return db.df(
            f"SELECT p.person_id, DATE '{as_of.isoformat()}' AS index_date FROM person p{where} ORDER BY 1"
        )
    return db.df(
        "SELECT p.person_id, coalesce(max(op.observation_period_end_date), current_date) AS index_date FROM person p "
        f"LEFT JOIN observation_period op ON op.person_id = p.person_id{where} GROUP BY p.person_id ORDER BY 1"
    )


def person_features(
    db: HubDatabase, model: SafeModel, person_ids: list[int] | None = None, as_of: date | None = None
) -> tuple[pd.DataFrame, Any]:
    """Rows (``row_id, person_id, index_date``) and the covariate matrix in the model's columns."""
    rows = _as_of_dates(db, person_ids, as_of)
    rows.insert(0, "row_id", np.arange(len(rows), dtype=np.int64))
    if rows.empty:
        return rows, None
    settings = load_task(model.meta["task"]).features
    load_rows(db, rows)
    matrix, _ = build_features(db, settings, len(rows), model.feature_names)
    return rows, matrix


def score_batch(
    model: SafeModel | Path | str,
    db: HubDatabase,
    *,
    as_of: date | None = None,
    person_ids: list[int] | None = None,
    registry: Path | None = None,
) -> pd.DataFrame:
    """Risk for every person of ``db`` (or ``person_ids``) as of ``as_of`` (default: their last observed day)."""
    frozen = _model(model, registry)
    rows, matrix = person_features(db, frozen, person_ids, as_of)
    risk = frozen.predict_proba(matrix) if matrix is not None else np.array([])
    return pd.DataFrame({"person_id": rows["person_id"], "index_date": rows["index_date"], "risk": risk})


def _concept_of(feature: str) -> str:
    """The concept id inside a feature name (``condition:201826:365d`` -> ``201826``), or ''."""
    parts = feature.split(":")
    return parts[1].split("=")[0] if len(parts) > 1 else ""


def _descriptions(db: HubDatabase, features: list[str]) -> dict[str, str]:
    """Concept names for feature names (``condition:201826:365d`` -> Type 2 diabetes mellitus)."""
    ids = {int(c) for c in map(_concept_of, features) if c.isdigit()}
    by_id = (
        dict(
            db.rows(
                f"SELECT concept_id, concept_name FROM concept WHERE concept_id IN ({', '.join(map(str, ids))})"
            )
        )
        if ids
        else {}
    )
    out: dict[str, str] = {}
    for feature in features:
        concept = _concept_of(feature)
        if concept.isdigit() and int(concept) in by_id:
            out[feature] = str(by_id[int(concept)])
        elif feature.startswith("value:") and feature.count(":") == 2:
            _, vocabulary, code = feature.split(":")
            found = db.rows(
                "SELECT concept_name FROM concept WHERE vocabulary_id = ? AND concept_code = ?",
                [vocabulary, code],
            )
            if found:
                out[feature] = str(found[0][0])
    return out


def _explain(frozen: SafeModel, matrix: Any, descriptions: dict[str, str], top: int) -> list[dict[str, Any]]:
    contributions = frozen.contributions(matrix)[0]
    values = np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix).ravel()
    order = [i for i in np.argsort(-np.abs(contributions)) if contributions[i] != 0][:top]
    return [
        {
            "feature": frozen.feature_names[i],
            "description": descriptions.get(frozen.feature_names[i], ""),
            "value": float(values[i]),
            "contribution": float(contributions[i]),
        }
        for i in order
    ]


class PersonScorer:
    """Scores persons of one CDM with a frozen model; the feature lookup tables are prepared once."""

    def __init__(self, db: HubDatabase, model: SafeModel | Path | str, registry: Path | None = None) -> None:
        self.db = db
        self.model = _model(model, registry)
        self.settings = load_task(self.model.meta["task"]).features
        prepare_features(db, self.settings, self.model.feature_names)
        self.descriptions = _descriptions(db, self.model.feature_names)

    def score(self, person_id: int, as_of: date | None = None, top: int = 10) -> dict[str, Any]:
        """Risk and top contributing features (to the log-odds) of one person, as of a date."""
        self.db.con.execute(
            "CREATE OR REPLACE TEMP TABLE hm_rows AS SELECT CAST(0 AS BIGINT) AS row_id, p.person_id, "
            "CAST(coalesce(CAST(? AS DATE), max(op.observation_period_end_date), current_date) AS DATE) AS index_date "
            "FROM person p LEFT JOIN observation_period op ON op.person_id = p.person_id "
            "WHERE p.person_id = ? GROUP BY p.person_id",
            [as_of, int(person_id)],
        )
        found = self.db.rows("SELECT index_date FROM hm_rows")
        if not found:
            raise ModelError(f"person {person_id} is not in this CDM")
        matrix = collect_features(self.db, self.settings, 1, len(self.model.feature_names))
        return {
            "person_id": int(person_id),
            **_answer(self.model, matrix, found[0][0], self.descriptions, top),
        }


def _answer(
    frozen: SafeModel, matrix: Any, index_date: date, descriptions: dict[str, str], top: int
) -> dict[str, Any]:
    """The scoring answer for one row of covariates: risk, model and the top contributing features."""
    return {
        "index_date": str(index_date),
        "risk": float(frozen.predict_proba(matrix)[0]),
        "task": frozen.meta.get("task", {}).get("name"),
        "model_id": frozen.meta.get("model_id"),
        "top_features": _explain(frozen, matrix, descriptions, top),
    }


def score_person(
    db: HubDatabase, model: SafeModel | Path | str, person_id: int, as_of: date | None = None, top: int = 10
) -> dict[str, Any]:
    """Risk and top contributing features of one person of ``db`` (use ``PersonScorer`` for many)."""
    return PersonScorer(db, model).score(person_id, as_of, top)


def _bundle_dict(bundle: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(bundle, dict):
        return bundle
    if isinstance(bundle, str) and bundle.lstrip().startswith("{"):
        text = bundle
    else:
        path = Path(bundle)
        if not path.is_file():
            raise ModelError(f"Bundle file {str(path)!r} not found")
        text = path.read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelError(f"the patient Bundle is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        raise ModelError("expected a FHIR Bundle (resourceType 'Bundle') holding one patient's resources")
    return document


class BundleScorer:
    """Scores one patient's FHIR Bundle with a frozen CDM model.

    A Bundle that loads cleanly is mapped in memory (``ingest.one_patient``) and its covariates are
    computed in memory (``patient_features``): about a millisecond. Any other Bundle takes the
    reference path: it is ingested into a scratch in-memory CDM with the database mapping and
    scored with the feature SQL, which gives the authoritative answer or the one-line reason.
    Tests hold both paths equal. ``fast=False`` always takes the reference path.
    """

    def __init__(
        self,
        model: SafeModel | Path | str,
        *,
        registry: Path | None = None,
        secret_key: bytes | str = b"",
        fast: bool = True,
    ) -> None:
        try:
            from healthmesh.ingest.one_patient import BundleMapper
        except ImportError as error:
            raise ModelError("scoring a Bundle needs healthmesh.ingest, which is not installed") from error
        self.model = _model(model, registry)
        key = secret_key if isinstance(secret_key, bytes) else secret_key.encode()
        # A scratch CDM lives for one request; a per-process random key keeps its pseudonyms unlinkable.
        self.secret_key = key or secrets.token_bytes(32)
        self.db = create_hub(":memory:")
        self.persons = PersonScorer(self.db, self.model)
        self.fast = fast
        self.mapper = BundleMapper(self.db)
        self.columns = {name: i for i, name in enumerate(self.model.feature_names)}
        self.value_keys: dict[int, list[str]] = {}
        for concept, value_key in resolve_value_keys(self.db, self.persons.settings).itertuples(index=False):
            self.value_keys.setdefault(int(concept), []).append(str(value_key))

    def close(self) -> None:
        self.db.close()

    def load(self, bundle: dict[str, Any] | str | Path) -> int:
        """Reference path: empty the scratch CDM, ingest the Bundle into it, return the patient's person_id."""
        from healthmesh.ingest import ingest_bundle

        document = _bundle_dict(bundle)
        filled = self.db.rows(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND estimated_size > 0 "
            f"AND table_name IN ({', '.join(repr(t) for t in _PATIENT_TABLES)})"
        )
        for (table,) in filled:
            self.db.con.execute(f"DELETE FROM {table}")
        report = ingest_bundle(self.db, json.dumps(document), hub="scratch", secret_key=self.secret_key)
        if not getattr(report, "committed", True):
            reasons = "; ".join(str(r.get("reason")) for r in getattr(report, "rejections", [])[:3])
            raise ModelError(f"the Bundle could not be loaded: {reasons or 'rejected by ingest'}")
        people = [row[0] for row in self.db.rows("SELECT person_id FROM person")]
        if len(people) != 1:
            raise ModelError(f"the Bundle must hold exactly one patient; it held {len(people)}")
        return int(people[0])

    def features(
        self, bundle: dict[str, Any] | str | Path, as_of: date | None = None
    ) -> tuple[date, dict[str, float]] | None:
        """Fast path: the index date and named covariates of a cleanly loading Bundle, else None."""
        from healthmesh.ingest.one_patient import NeedsDatabase

        try:
            records = self.mapper.map(_bundle_dict(bundle))
        except NeedsDatabase:
            return None
        index_date = as_of or records.last_day or date.today()
        return index_date, patient_features(records, self.persons.settings, index_date, self.value_keys)

    def score_in_memory(
        self, bundle: dict[str, Any] | str | Path, as_of: date | None = None, top: int = 10
    ) -> dict[str, Any] | None:
        """The answer of ``score`` for a cleanly loading Bundle, else None. Reads no database and
        changes no state, so any number of threads (or an event loop) may call it at once."""
        found = self.features(bundle, as_of) if self.fast else None
        if found is None:
            return None
        index_date, named = found
        row = np.zeros((1, len(self.columns)))
        for name, value in named.items():
            column = self.columns.get(name)
            if column is not None:
                row[0, column] = value
        return _answer(self.model, row, index_date, self.persons.descriptions, top)

    def score(
        self, bundle: dict[str, Any] | str | Path, as_of: date | None = None, top: int = 10
    ) -> dict[str, Any]:
        """Risk and top contributing features for the patient in ``bundle``."""
        document = _bundle_dict(bundle)
        answer = self.score_in_memory(document, as_of, top)
        if answer is None:  # the database path: one Bundle at a time on this scorer's scratch CDM
            answer = self.persons.score(self.load(document), as_of, top)
            answer.pop("person_id")
        return answer


def score_bundle(
    model: SafeModel | Path | str,
    bundle: dict[str, Any] | str | Path,
    *,
    as_of: date | None = None,
    registry: Path | None = None,
    top: int = 10,
) -> dict[str, Any]:
    """One-shot: risk and top contributing features for one patient Bundle (use ``BundleScorer`` for many)."""
    scorer = BundleScorer(model, registry=registry)
    try:
        return scorer.score(bundle, as_of, top)
    finally:
        scorer.close()
