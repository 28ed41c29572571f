"""Risk prediction: flat tables, tasks, features, models, evaluation, model cards and the registry.

Entry points the CLI, the API and ``healthmesh demo`` call:

- ``train_task(db, task, out, *, release, hub=None, seed=0, models=None, registry=None)`` -> metrics dict
- ``validate_cdm(model_dir, db, out, *, release, hub=None, registry=None)`` -> metrics dict
  (``release``: the hub's ``Release``; the card and report written are the released documents)
- ``fit_table(data, target, out, *, positive=None, seed=0, models=DEFAULT_MODELS, registry=None)``
- ``validate_table(model_dir, data, target, out, *, positive=None, registry=None)``
- ``score_bundle(model, bundle, *, as_of=None, registry=None, top=10)`` / ``BundleScorer(model).score(bundle)``
- ``score_batch(model, db, *, as_of=None, person_ids=None, registry=None)`` -> DataFrame
"""

from __future__ import annotations

from healthmesh.risk.fit_table import fit_table, validate_table
from healthmesh.risk.learners import DEFAULT_MODELS, MODEL_NAMES
from healthmesh.risk.metrics import METRIC_KEYS, evaluate, evaluate_groups
from healthmesh.risk.modelfile import SafeModel, load_model, save_model
from healthmesh.risk.registry import list_entries, load_registered, register
from healthmesh.risk.scoring import BundleScorer, PersonScorer, score_batch, score_bundle, score_person
from healthmesh.risk.tables import TableData, make_preprocessor, read_table
from healthmesh.risk.tasks import Task, builtin_tasks, load_task
from healthmesh.risk.train import train_task, validate_cdm

__all__ = [
    "DEFAULT_MODELS",
    "METRIC_KEYS",
    "MODEL_NAMES",
    "BundleScorer",
    "PersonScorer",
    "SafeModel",
    "TableData",
    "Task",
    "builtin_tasks",
    "evaluate",
    "evaluate_groups",
    "fit_table",
    "list_entries",
    "load_model",
    "load_registered",
    "load_task",
    "make_preprocessor",
    "read_table",
    "register",
    "save_model",
    "score_batch",
    "score_bundle",
    "score_person",
    "train_task",
    "validate_cdm",
    "validate_table",
]
