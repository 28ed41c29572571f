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

import typing as _typing
from importlib import import_module as _import_module

# The names below load their module on first use: the hub service scores with a few of them and
# should not pay for scikit-learn, SciPy and matplotlib (training, plots) at every start. No name
# may be its module's name: importing a submodule sets it on the package, hiding the function.
_EXPORTS = {
    "BundleScorer": "healthmesh.risk.scoring",
    "DEFAULT_MODELS": "healthmesh.risk.names",
    "METRIC_KEYS": "healthmesh.risk.metrics",
    "MODEL_NAMES": "healthmesh.risk.names",
    "PersonScorer": "healthmesh.risk.scoring",
    "SafeModel": "healthmesh.risk.modelfile",
    "TableData": "healthmesh.risk.tables",
    "Task": "healthmesh.risk.tasks",
    "builtin_tasks": "healthmesh.risk.tasks",
    "evaluate": "healthmesh.risk.metrics",
    "evaluate_groups": "healthmesh.risk.metrics",
    "fit_table": "healthmesh.risk.flat_table",
    "list_entries": "healthmesh.risk.registry",
    "load_model": "healthmesh.risk.modelfile",
    "load_registered": "healthmesh.risk.registry",
    "load_task": "healthmesh.risk.tasks",
    "make_preprocessor": "healthmesh.risk.tables",
    "read_table": "healthmesh.risk.tables",
    "register": "healthmesh.risk.registry",
    "save_model": "healthmesh.risk.modelfile",
    "score_batch": "healthmesh.risk.scoring",
    "score_bundle": "healthmesh.risk.scoring",
    "score_person": "healthmesh.risk.scoring",
    "train_task": "healthmesh.risk.train",
    "validate_cdm": "healthmesh.risk.train",
    "validate_table": "healthmesh.risk.flat_table",
}

if _typing.TYPE_CHECKING:
    from healthmesh.risk.flat_table import fit_table, validate_table
    from healthmesh.risk.metrics import METRIC_KEYS, evaluate, evaluate_groups
    from healthmesh.risk.modelfile import SafeModel, load_model, save_model
    from healthmesh.risk.names import DEFAULT_MODELS, MODEL_NAMES
    from healthmesh.risk.registry import list_entries, load_registered, register
    from healthmesh.risk.scoring import BundleScorer, PersonScorer, score_batch, score_bundle, score_person
    from healthmesh.risk.tables import TableData, make_preprocessor, read_table
    from healthmesh.risk.tasks import Task, builtin_tasks, load_task
    from healthmesh.risk.train import train_task, validate_cdm


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(module), name)
    globals()[name] = value
    return value


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
