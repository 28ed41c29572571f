"""The ClientApp each hub's SuperNode runs: it reads only its own data, and answers in aggregates.

Node config: ``site=NAME`` and ``table=FILE`` or ``db=PATH`` (the hub's CDM); optionally
``min-cell=N`` (small-cell threshold, default 5) and ``audit-dir=PATH`` (write every reply there).
Every reply passes ``hub_guard`` (see ``guard.py``) before it leaves.

Message types:
- ``query.summary``: column aggregates of the training rows, to agree the preprocessing;
- ``train``: local gradient steps from the global logistic model (FedAvg / FedProx / FedAdam);
- ``evaluate``: metrics of a model on the held-out rows (metrics only);
- ``query.count``: persons in a concept set, by sex and age band, small cells suppressed;
- ``evaluate.validate``: external validation of a given model on all of this hub's rows.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from healthmesh.federation.guard import hub_guard, register_local_rows
from healthmesh.federation.logreg import LogisticParams, local_train, log_loss, predict_proba, roc_auc
from healthmesh.federation.preprocess import AgreedPreprocessor, summarise_columns
from healthmesh.federation.sitedata import load_site_data

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
    job: dict[str, Any] = json.loads(str(config.get("job", "{}")))
    return job


def _preprocessor(message: Message) -> AgreedPreprocessor:
    config = message.content["config"]
    return AgreedPreprocessor.from_dict(json.loads(str(config["preprocessor"])))  # type: ignore[index]


def _min_cell(context: Context) -> int:
    return int(context.node_config.get("min-cell", 5))  # type: ignore[arg-type]


@app.query("summary")
def summary(message: Message, context: Context) -> Message:
    data = load_site_data(context.node_config, _job(message))
    register_local_rows(context, *data.row_counts)
    aggregates = summarise_columns(data.X_train, _min_cell(context))
    return Message(
        RecordDict({"summary": ConfigRecord({"columns": json.dumps(aggregates)})}),
        reply_to=message,
    )


@app.train()
def train(message: Message, context: Context) -> Message:
    job = _job(message)
    data = load_site_data(context.node_config, job)
    register_local_rows(context, *data.row_counts)
    config = message.content["config"]
    X = _preprocessor(message).transform(data.X_train)
    start = params_from_record(message.content["arrays"])  # type: ignore[arg-type]
    trained = local_train(
        start,
        X,
        data.y_train.astype(np.float64),
        steps=int(config["local-steps"]),  # type: ignore[index,arg-type,call-overload]
        lr=float(config["lr"]),  # type: ignore[index,arg-type]
        l2=float(config.get("l2", 0.0)),  # type: ignore[union-attr,arg-type]
        proximal_mu=float(config.get("proximal-mu", 0.0)),  # type: ignore[union-attr,arg-type]
    )
    metrics = MetricRecord(
        {"num-examples": len(data.y_train), "train-loss": log_loss(trained, X, data.y_train)}
    )
    return Message(RecordDict({"arrays": params_to_record(trained), "metrics": metrics}), reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    data = load_site_data(context.node_config, _job(message))
    register_local_rows(context, *data.row_counts)
    params = params_from_record(message.content["arrays"])  # type: ignore[arg-type]
    X = _preprocessor(message).transform(data.X_test)
    score = predict_proba(params, X)
    metrics = MetricRecord(
        {
            "num-examples": len(data.y_test),
            "auroc": roc_auc(data.y_test, score),
            "log-loss": log_loss(params, X, data.y_test),
        }
    )
    site = ConfigRecord({"site": str(context.node_config.get("site", ""))})
    return Message(RecordDict({"metrics": metrics, "site": site}), reply_to=message)


@app.query("count")
def count(message: Message, context: Context) -> Message:
    from healthmesh.federation.cdm_tasks import hub_concept_counts

    job = _job(message)
    db = context.node_config.get("db")
    counts, rows = hub_concept_counts(str(db) if db else "", job, _min_cell(context))
    register_local_rows(context, rows)
    site = ConfigRecord({"site": str(context.node_config.get("site", ""))})
    return Message(
        RecordDict({"counts": MetricRecord(dict[str, Any](counts)), "site": site}), reply_to=message
    )


@app.evaluate("validate")
def validate(message: Message, context: Context) -> Message:
    from healthmesh.federation.cdm_tasks import hub_validation_metrics

    job = _job(message)
    params = params_from_record(message.content["arrays"])  # type: ignore[arg-type]
    metrics, rows = hub_validation_metrics(
        context.node_config, job, params, _preprocessor(message), _min_cell(context)
    )
    register_local_rows(context, rows)
    site = ConfigRecord({"site": str(context.node_config.get("site", ""))})
    return Message(
        RecordDict({"metrics": MetricRecord(dict[str, Any](metrics)), "site": site}), reply_to=message
    )
