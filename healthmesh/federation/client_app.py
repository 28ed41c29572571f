"""The ClientApp each hub runs: it reads only its own data, and answers in aggregates.

Node config: ``site=NAME`` and ``table=FILE`` or ``db=PATH`` (the hub's CDM); ``policy=PATH`` (the
hub policy, else the default one), ``key-file=PATH`` (the release key, 0600); optionally
``min-cell=N`` and ``audit-dir=PATH`` (write every reply there).

Every message is first checked against the hub policy (``policing.admit``) before any data is
read; a refusal is an error reply with a one-line reason. Every number the hub counts (rows,
examples, value counts, suppressed values) passes the release path (``policing.hub_release``),
and every reply passes ``hub_guard`` (see ``guard.py``) before it leaves.

Message types:
- ``query.summary``: column aggregates of the training rows, to agree the preprocessing;
- ``train``: local gradient steps from the global logistic model (FedAvg / FedProx / FedAdam);
- ``evaluate``: metrics of a model on the held-out rows (metrics only);
- ``query.count``: persons in a concept set, by sex and age band, small cells suppressed;
- ``evaluate.validate``: external validation of a given model on all of this hub's rows.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from healthmesh.federation.guard import hub_guard, register_local_rows
from healthmesh.federation.logreg import LogisticParams, local_train, log_loss, predict_proba, roc_auc
from healthmesh.federation.policing import (
    admit,
    check_training,
    hub_min_cell,
    hub_preprocessor,
    hub_release,
    hub_rows,
    task_frame,
)
from healthmesh.federation.preprocess import AgreedPreprocessor, summarise_columns
from healthmesh.federation.sitedata import load_site_data
from healthmesh.policy import PolicyRefusal

__all__ = ["app", "params_from_record", "params_to_record"]

app = ClientApp(mods=[hub_guard])


def params_to_record(params: LogisticParams) -> ArrayRecord:
    return ArrayRecord(
        {
            "coef": Array(np.asarray(params.coef, dtype=np.float64)),
            "intercept": Array(np.asarray([params.intercept])),
        }
    )


def params_from_record(record: ArrayRecord) -> LogisticParams:
    return LogisticParams(record["coef"].numpy().astype(np.float64), float(record["intercept"].numpy()[0]))


def _job(message: Message) -> dict[str, Any]:
    config = message.content.config_records.get("config", ConfigRecord())
    try:
        job = json.loads(str(config.get("job", "{}")))
    except ValueError:
        raise PolicyRefusal("the job is not valid JSON") from None
    if not isinstance(job, dict):
        raise PolicyRefusal("the job must be a JSON object")
    return job


def _config(message: Message) -> dict[str, Any]:
    config = message.content.config_records.get("config", ConfigRecord())
    return dict(config.items())


def _preprocessor(message: Message, n_params: int) -> AgreedPreprocessor:
    try:
        spec = AgreedPreprocessor.from_dict(json.loads(str(_config(message)["preprocessor"])))
        names = spec.feature_names
    except (KeyError, TypeError, ValueError):
        raise PolicyRefusal("the message carries no valid preprocessing") from None
    if len(names) + 1 != n_params:
        raise PolicyRefusal(f"the model has {n_params} parameters for {len(names)} features")
    return spec


def _site(context: Context) -> ConfigRecord:
    return ConfigRecord({"site": str(context.node_config.get("site", ""))})


def _released_examples(context: Context, min_cell: int, ids: np.ndarray) -> int:
    """The number of examples as the release path gives it (a count like any other)."""
    release = hub_release(context.node_config, min_cell)
    released = release.count(len(ids), release.person_key(ids))
    if released is None:
        raise PolicyRefusal(f"fewer than {min_cell} examples; this hub does not answer")
    return int(released)


@app.query("summary")
def summary(message: Message, context: Context) -> Message:
    job = _job(message)
    policy, task = admit(context.node_config, "query.summary", job, training=True)
    min_cell = hub_min_cell(context.node_config, policy)
    release = hub_release(context.node_config, min_cell)
    data = load_site_data(context.node_config, job)
    register_local_rows(context, *data.row_counts)
    aggregates = summarise_columns(task_frame(data.X_train, task), min_cell, release, data.train_ids)
    if aggregates["rows"] is None:
        raise PolicyRefusal(f"fewer than {min_cell} training rows; this hub does not answer")
    return Message(
        RecordDict({"summary": ConfigRecord({"columns": json.dumps(aggregates)})}),
        reply_to=message,
    )


@app.train()
def train(message: Message, context: Context) -> Message:
    job = _job(message)
    policy, task = admit(context.node_config, "train", job, training=True)
    config = _config(message)
    start = params_from_record(message.content["arrays"])  # type: ignore[arg-type]
    check_training(policy, config, start.as_vector())
    spec = _preprocessor(message, start.as_vector().size)
    min_cell = hub_min_cell(context.node_config, policy)
    data = load_site_data(context.node_config, job)
    register_local_rows(context, *data.row_counts)
    X_frame = task_frame(data.X_train, task)
    spec = hub_preprocessor(spec, X_frame, task, min_cell)
    policy.check_params_per_example(start.as_vector().size, len(data.y_train))
    examples = _released_examples(context, min_cell, data.train_ids)
    X = spec.transform(hub_rows(X_frame, spec, min_cell))
    trained = local_train(
        start,
        X,
        data.y_train.astype(np.float64),
        steps=int(config["local-steps"]),
        lr=float(config["lr"]),
        l2=float(config.get("l2", 0.0)),
        proximal_mu=float(config.get("proximal-mu", 0.0)),
    )
    metrics = MetricRecord({"num-examples": examples, "train-loss": log_loss(trained, X, data.y_train)})
    return Message(RecordDict({"arrays": params_to_record(trained), "metrics": metrics}), reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    job = _job(message)
    policy, task = admit(context.node_config, "evaluate", job, training=True)
    params = params_from_record(message.content["arrays"])  # type: ignore[arg-type]
    policy.check_start_parameters([float(v) for v in params.as_vector()])
    spec = _preprocessor(message, params.as_vector().size)
    min_cell = hub_min_cell(context.node_config, policy)
    data = load_site_data(context.node_config, job)
    register_local_rows(context, *data.row_counts)
    spec = hub_preprocessor(spec, task_frame(data.X_train, task), task, min_cell)
    X = spec.transform(hub_rows(task_frame(data.X_test, task), spec, min_cell))
    values: dict[str, Any] = {"num-examples": _released_examples(context, min_cell, data.test_ids)}
    positives = int(np.sum(data.y_test))
    if min(positives, len(data.y_test) - positives) >= min_cell:
        score = predict_proba(params, X)
        # Rounded, as in validation: a full float is an exact fraction of counts.
        values.update(
            {
                "auroc": round(roc_auc(data.y_test, score), 3),
                "log-loss": round(log_loss(params, X, data.y_test), 3),
            }
        )
    else:
        values["withheld"] = 1.0  # an outcome class of a few persons: metrics would describe them
    return Message(RecordDict({"metrics": MetricRecord(values), "site": _site(context)}), reply_to=message)


@app.query("count")
def count(message: Message, context: Context) -> Message:
    from healthmesh.federation.cdm_tasks import hub_concept_counts

    job = _job(message)
    policy, _ = admit(context.node_config, "query.count", job, training=False)
    db = context.node_config.get("db")
    release = hub_release(context.node_config, hub_min_cell(context.node_config, policy))
    counts, rows = hub_concept_counts(str(db) if db else "", job, release)
    register_local_rows(context, rows)
    return Message(
        RecordDict({"counts": MetricRecord(dict[str, Any](counts)), "site": _site(context)}), reply_to=message
    )


@app.evaluate("validate")
def validate(message: Message, context: Context) -> Message:
    from healthmesh.federation.cdm_tasks import hub_validation_metrics

    job = _job(message)
    policy, task = admit(context.node_config, "evaluate.validate", job, training=True)
    params = params_from_record(message.content["arrays"])  # type: ignore[arg-type]
    policy.check_start_parameters([float(v) for v in params.as_vector()])
    spec = _preprocessor(message, params.as_vector().size)
    min_cell = hub_min_cell(context.node_config, policy)
    data = load_site_data(context.node_config, job)
    spec = hub_preprocessor(spec, task_frame(data.X_train, task), task, min_cell)
    metrics, rows = hub_validation_metrics(context.node_config, job, params, spec, min_cell)
    register_local_rows(context, rows)
    return Message(
        RecordDict({"metrics": MetricRecord(dict[str, Any](metrics)), "site": _site(context)}),
        reply_to=message,
    )


@app.query("health")
def health(message: Message, context: Context) -> Message:
    """Which environment variables this ClientApp process sees (names only, never values)."""
    names = sorted(os.environ)
    return Message(RecordDict({"health": ConfigRecord({"env": json.dumps(names)})}), reply_to=message)
