"""Train a task on one hub's CDM, and validate a frozen model on another hub's CDM.

Training follows PatientLevelPrediction's design: the population is split by person into a training
part and a held-out test part (stratified, seeded); the model and its hyper-parameters are chosen by
cross-validation on the training part only; the test part gives the metrics.

The card and ``metrics.json`` leave the hub with the model, so they are written through the hub's
release path (``release``): every count keyed by the persons behind it (attrition steps included),
subgroups of few persons withheld, metrics rounded (see ``report``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from healthmesh.cdm import HubDatabase
from healthmesh.errors import ModelError
from healthmesh.privacy.release import Release
from healthmesh.risk.features import build_features, load_rows
from healthmesh.risk.learners import check_outcomes, choose_model
from healthmesh.risk.metrics import METRIC_DECIMALS
from healthmesh.risk.modelfile import SafeModel, export_pipeline, save_model
from healthmesh.risk.population import age_band, hub_name, population_conditions, task_population
from healthmesh.risk.registry import default_registry, load_registered, register
from healthmesh.risk.report import new_model_id, now_iso, top_features, write_report
from healthmesh.risk.tasks import Task, load_task

__all__ = ["TaskData", "task_data", "train_task", "validate_cdm"]


class TaskData:
    """A task's population on one hub with its covariate matrix."""

    def __init__(
        self, rows: pd.DataFrame, matrix: Any, names: list[str], attrition: list[dict[str, Any]], hub: str
    ):
        self.rows = rows
        self.matrix = matrix
        self.names = names
        self.attrition = attrition
        self.hub = hub

    @property
    def y(self) -> np.ndarray:
        return self.rows["label"].to_numpy(dtype=int)

    def groups(self) -> dict[str, np.ndarray]:
        sex = np.where(self.rows["gender_concept_id"] == 8507, "male", "female")
        sex = np.where(self.rows["gender_concept_id"].isin([8507, 8532]), sex, "other/unknown")
        return {
            "sex": sex,
            "age_band": age_band(self.rows["age"].to_numpy()),
            "hub": np.full(len(self.rows), self.hub),
        }


def task_data(
    db: HubDatabase, task: Task, names: list[str] | None = None, hub: str | None = None
) -> TaskData:
    """Population and features of ``task`` on ``db`` (columns ``names`` when given, else learned here)."""
    rows, attrition = task_population(db, task)
    if rows.empty:
        raise ModelError(
            f"task {task.name!r} finds nobody on this hub (target cohort {task.target().name!r}); "
            "check that the hub has data, or the cohort counts with `healthmesh cohort count`"
        )
    load_rows(db, rows)
    matrix, names = build_features(db, task.features, len(rows), names)
    return TaskData(rows, matrix, names, attrition, hub_name(db, hub))


def _period(rows: pd.DataFrame) -> dict[str, str]:
    dates = pd.to_datetime(rows["index_date"])
    return {"index_from": str(dates.min().date()), "index_to": str(dates.max().date())}


def _concept_names(db: HubDatabase, names: list[str]) -> dict[str, str]:
    ids: set[int] = set()
    for name in names:
        parts = name.split(":")
        if len(parts) > 1 and parts[1].split("=")[0].isdigit():
            ids.add(int(parts[1].split("=")[0]))
    if not ids:
        return {}
    found = db.rows(
        f"SELECT concept_id, concept_name FROM concept WHERE concept_id IN ({', '.join(map(str, sorted(ids)))})"
    )
    return {str(k): str(v) for k, v in found}


def _describe(name: str, concepts: dict[str, str]) -> str:
    parts = name.split(":")
    if len(parts) > 1:
        concept = parts[1].split("=")[0]
        if concept in concepts:
            return f"{name} ({concepts[concept]})"
    return name


def _person_ids(db: HubDatabase, sql: str) -> np.ndarray:
    return np.asarray([row[0] for row in db.rows(sql)], dtype=np.int64)


def _released_attrition(
    db: HubDatabase, task: Task, data: TaskData, release: Release
) -> list[dict[str, Any]]:
    """The attrition with each step's counts released, keyed by that step's persons.

    The target cohort's step tables and ``hm_population`` are still in this connection; a step whose
    persons cannot be found again has its counts withheld rather than released under a guessed key.
    """
    from healthmesh.cohorts.compiler import compile_cohort

    tables = [
        t
        for label, t, _ in compile_cohort(task.target(), "hm_target")
        if label not in ("concept sets", "cohort")
    ]
    persons_sql = [f"SELECT DISTINCT person_id FROM {t}" for t in tables]
    outcome_sql: list[str | None] = [None] * len(tables)
    where = "TRUE"
    for _, condition in population_conditions(task):
        where = f"{where} AND {condition}"
        persons_sql.append(f"SELECT DISTINCT person_id FROM hm_population WHERE {where}")
        outcome_sql.append(f"SELECT DISTINCT person_id FROM hm_population WHERE {where} AND label")
    aligned = len(persons_sql) == len(data.attrition)
    released = []
    for i, step in enumerate(data.attrition):
        keys = {}
        if aligned:
            keys["persons"] = keys["events"] = release.person_key(_person_ids(db, persons_sql[i]))
            if outcome_sql[i]:
                keys["outcomes"] = release.person_key(_person_ids(db, str(outcome_sql[i])))
        # Only the step's name, its cohort and its released counts travel (no key, nothing else).
        shown: dict[str, Any] = {k: step[k] for k in ("step", "cohort") if k in step}
        for k in ("events", "persons", "outcomes"):
            if k in step:
                shown[k] = release.count(int(step[k]), keys[k]) if k in keys else None
        released.append(shown)
    return released


def _card(
    task: Task,
    data: TaskData,
    model: SafeModel,
    label: str,
    db: HubDatabase,
    extra: dict[str, Any],
    release: Release,
) -> dict[str, Any]:
    concepts = _concept_names(db, [f["name"] for f in top_features(model)])
    top = [{"name": _describe(f["name"], concepts), "weight": f["weight"]} for f in top_features(model)]
    persons = data.rows["person_id"].to_numpy()
    everyone = release.person_key(persons)
    return {
        "title": f"{task.name} at {data.hub}",
        "model_id": model.meta["model_id"],
        "created": now_iso(),
        "hub": data.hub,
        "model": label,
        "task": {
            "name": task.name,
            "description": task.description,
            "target_cohort": task.target().name,
            "outcome_cohort": task.outcome().name,
            "time_at_risk": f"{task.time_at_risk.start_days} to {task.time_at_risk.end_days} days after index",
        },
        "data": {
            "hub": data.hub,
            "persons": release.count(int(data.rows["person_id"].nunique()), everyone),
            "rows": release.count(len(data.rows), everyone),
            "outcomes": release.count(int(data.y.sum()), release.person_key(persons[data.y == 1])),
            **_period(data.rows),
            "attrition": _released_attrition(db, task, data, release),
        },
        "features": {
            "count": len(model.feature_names),
            "description": "demographics; concepts in look-back windows; latest lab values; visit counts",
            "top": top,
        },
        "limits": [
            f"Trained on one hub ({data.hub}); validate at a hub before using it there.",
            "Covariates absent from a hub's records count as absent, not missing at random.",
            f"Subgroup metrics over fewer than {release.min_count} persons with or without the outcome are "
            "withheld; counts are released through the hub's release path (small ones withheld, the rest "
            f"perturbed by up to {release.max_noise}); metrics are rounded to {METRIC_DECIMALS} decimals.",
        ],
        **extra,
    }


def train_task(
    db: HubDatabase,
    task: str | Path | Task,
    out: Path,
    *,
    release: Release,
    hub: str | None = None,
    seed: int = 0,
    models: list[str] | tuple[str, ...] | None = None,
    registry: Path | None = None,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Train ``task`` on the hub ``db``; write the model, its card and ``metrics.json`` into ``out``.

    ``release`` is the hub's release path: the card and metrics are the released documents.
    """
    task = task if isinstance(task, Task) else load_task(task)
    data = task_data(db, task, hub=hub)
    y = data.y
    check_outcomes(y, f"task {task.name!r} at {data.hub}", folds=3)
    persons = data.rows["person_id"].to_numpy()
    unique, first = np.unique(persons, return_index=True)
    person_label = pd.Series(y).groupby(persons).max().reindex(unique).to_numpy()
    train_persons, _ = train_test_split(
        unique, test_size=task.test_fraction, random_state=seed, stratify=person_label
    )
    is_train = np.isin(persons, train_persons)
    check_outcomes(y[is_train], f"training part of task {task.name!r} at {data.hub}", folds=3)
    pipeline, label, inner_auroc = choose_model(
        data.matrix[is_train], y[is_train], models=models or task.models, seed=seed, n_jobs=n_jobs
    )
    model = export_pipeline(pipeline, "sparse", data.names)
    model.preprocessing["sparse"]["mean"] = [
        float(v) for v in np.asarray(data.matrix[is_train].mean(axis=0)).ravel()
    ]
    model_id = new_model_id(f"{task.name}-{data.hub}")
    model.meta = {
        "model_id": model_id,
        "label": label,
        "task": task.document(),
        "hub": data.hub,
        "seed": seed,
    }
    out = Path(out)
    save_model(out, model)
    p_test = model.predict_proba(data.matrix[~is_train])
    np.testing.assert_allclose(p_test, pipeline.predict_proba(data.matrix[~is_train])[:, 1], atol=1e-6)
    test_groups = {k: v[~is_train] for k, v in data.groups().items()}
    extra = {
        "model": label,
        "model_id": model_id,
        "task": task.name,
        "hub": data.hub,
        "inner_cv_auroc": round(float(inner_auroc), METRIC_DECIMALS),
        "n_train": release.count(int(is_train.sum()), release.person_key(persons[is_train])),
        "evaluation": f"held-out {task.test_fraction:.0%} of persons",
    }
    card = _card(
        task,
        data,
        model,
        label,
        db,
        {
            "evaluation_design": (
                f"split by person: {1 - task.test_fraction:.0%} training (model and hyper-parameters chosen by 3-fold CV "
                f"there, seed {seed}), {task.test_fraction:.0%} held out for these metrics"
            )
        },
        release,
    )
    metrics = write_report(
        out,
        y[~is_train],
        p_test,
        extra=extra,
        card=card,
        groups=test_groups,
        title=str(card["title"]),
        release=release,
        persons=persons[~is_train],
    )
    register(
        Path(registry) if registry else default_registry(out),
        folder=out,
        model_id=model_id,
        name=task.name,
        hub=data.hub,
        data_fingerprint=_fingerprint(data),
        metrics=metrics,
    )
    return metrics


def _fingerprint(data: TaskData) -> str:
    import hashlib

    digest = hashlib.sha256()
    digest.update(
        pd.util.hash_pandas_object(data.rows[["person_id", "index_date", "label"]], index=False)
        .to_numpy()
        .tobytes()
    )
    digest.update(np.asarray(data.matrix.indptr).tobytes() + np.asarray(data.matrix.indices).tobytes())
    return digest.hexdigest()


def validate_cdm(
    model_dir: Path,
    db: HubDatabase,
    out: Path,
    *,
    release: Release,
    hub: str | None = None,
    registry: Path | None = None,
) -> dict[str, Any]:
    """Apply a frozen CDM model to another hub's CDM (same task, same covariates); write the same report.

    ``release`` is the validating hub's release path: the validation report is the released document.
    """
    model = load_registered(Path(model_dir), registry)
    if model.input_kind != "sparse":
        raise ModelError(
            f"model in {str(model_dir)!r} was fitted on a flat table; validate it with --data, not --db"
        )
    task = load_task(model.meta["task"])
    data = task_data(db, task, names=model.feature_names, hub=hub)
    p = model.predict_proba(data.matrix)
    extra = {
        "model": model.meta.get("label"),
        "model_id": model.meta.get("model_id"),
        "task": task.name,
        "hub": data.hub,
        "trained_at": model.meta.get("hub"),
        "evaluation": "external validation of the frozen model (no refitting)",
    }
    card = _card(
        task,
        data,
        model,
        str(model.meta.get("label")),
        db,
        {
            "title": f"{task.name}: model from {model.meta.get('hub')} validated at {data.hub}",
            "evaluation_design": "external validation: frozen model, covariates rebuilt here with the same SQL",
        },
        release,
    )
    return write_report(
        out,
        data.y,
        p,
        extra=extra,
        card=card,
        groups=data.groups(),
        title=str(card["title"]),
        card_stem="validation_card",
        release=release,
        persons=data.rows["person_id"].to_numpy(),
    )
