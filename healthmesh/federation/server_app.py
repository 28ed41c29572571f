"""The coordinator's ServerApp: one app, several jobs, chosen by the job file.

``flwr run`` passes only ``job-file``; the JSON job names the ``task``:

- ``train``: agree the preprocessing from the hubs' column aggregates, then federated logistic
  regression with FedAvg, FedProx or FedAdam (``flwr.serverapp.strategy``), then one round of
  federated evaluation on every hub's held-out rows;
- ``count``: a concept-set count at every hub (suppressed there), summed here;
- ``validate``: a given model evaluated at every hub (metrics only);
- ``study``: ``count``, ``train`` and ``validate`` of the trained model, in one run.

The result (parameters, metrics, bytes exchanged) is written to the job's ``result-file`` on the
coordinator; on failure the file holds ``{"error": ...}`` so the caller can report it in one line.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx

from healthmesh.errors import FederationError
from healthmesh.federation.client_app import params_to_record
from healthmesh.federation.counting import CountingGrid
from healthmesh.federation.logreg import LogisticParams
from healthmesh.federation.preprocess import agree_preprocessor

__all__ = ["STRATEGIES", "app", "make_strategy"]

app = ServerApp()

STRATEGIES = ("fedavg", "fedprox", "fedadam")


def make_strategy(name: str, n_nodes: int, job: dict[str, Any]) -> FedAvg:
    """One of flwr's strategies; every node trains each round and per-round evaluation is off."""
    common: dict[str, Any] = {
        "fraction_train": 1.0,
        "fraction_evaluate": 0.0,
        "min_train_nodes": n_nodes,
        "min_available_nodes": n_nodes,
    }
    if name == "fedavg":
        return FedAvg(**common)
    if name == "fedprox":
        return FedProx(**common, proximal_mu=float(job.get("proximal-mu", 0.5)))
    if name == "fedadam":
        return FedAdam(
            **common,
            eta=float(job.get("server-lr", 0.1)),
            eta_l=float(job.get("lr", 1.0)),
            beta_1=0.9,
            beta_2=0.99,
            tau=float(job.get("tau", 1e-3)),
        )
    raise FederationError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}")


def _wait_for_nodes(grid: Grid, expected: int, timeout: float = 120.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= expected:
            return nodes
        if time.monotonic() > deadline:
            raise FederationError(f"only {len(nodes)} of {expected} hubs connected within {timeout:.0f} s")
        time.sleep(0.2)


def _broadcast(grid: Grid, nodes: Iterable[int], content: RecordDict, message_type: str) -> list[Message]:
    messages = [Message(content=content, dst_node_id=node, message_type=message_type) for node in nodes]
    replies = list(grid.send_and_receive(messages, timeout=600))
    failed = [str(r.error.reason) for r in replies if r.has_error()]
    if failed:
        raise FederationError("; ".join(failed))
    if len(replies) < len(messages):
        raise FederationError(f"{len(messages) - len(replies)} hubs did not answer {message_type}")
    return replies


def _metrics(record: MetricRecord) -> dict[str, Any]:
    return {k: v for k, v in record.items()}


def _train(grid: CountingGrid, nodes: list[int], job: dict[str, Any]) -> dict[str, Any]:
    data_job = {
        k: job[k]
        for k in ("source", "target", "positive", "seed", "test-fraction", "risk-task", "horizon-years")
        if k in job
    }
    data_json = json.dumps(data_job)
    replies = _broadcast(
        grid, nodes, RecordDict({"config": ConfigRecord({"job": data_json})}), "query.summary"
    )
    summaries = [json.loads(str(r.content["summary"]["columns"])) for r in replies]  # type: ignore[index]
    spec = agree_preprocessor(summaries)
    n_train = sum(int(s["rows"]) for s in summaries)
    l2 = 1.0 / (float(job.get("C", 1.0)) * n_train)  # scikit-learn's C, on the pooled mean loss
    spec_json = json.dumps(spec.to_dict())

    strategy = make_strategy(str(job.get("strategy", "fedavg")), len(nodes), job)
    train_config = ConfigRecord(
        {
            "job": data_json,
            "preprocessor": spec_json,
            "lr": float(job.get("lr", 1.0)),
            "local-steps": int(job.get("local-steps", 5)),
            "l2": l2,
        }
    )
    initial = params_to_record(LogisticParams.zeros(len(spec.feature_names)))
    result = strategy.start(
        grid=grid, initial_arrays=initial, num_rounds=int(job.get("rounds", 10)), train_config=train_config
    )
    final = result.arrays
    coef = final["coef"].numpy().astype(np.float64)
    intercept = float(final["intercept"].numpy()[0])

    eval_content = RecordDict(
        {"arrays": final, "config": ConfigRecord({"job": data_json, "preprocessor": spec_json})}
    )
    evaluation = {}
    for reply in _broadcast(grid, nodes, eval_content, "evaluate"):
        site = str(reply.content["site"]["site"])  # type: ignore[index]
        evaluation[site] = _metrics(reply.content["metrics"])  # type: ignore[arg-type]
    rounds = [{"round": r, **_metrics(m)} for r, m in sorted(result.train_metrics_clientapp.items())]
    return {
        "coef": coef.tolist(),
        "intercept": intercept,
        "preprocessor": spec.to_dict(),
        "feature_names": spec.feature_names,
        "l2": l2,
        "rounds": rounds,
        "evaluation": evaluation,
        "site_rows": {str(i): int(s["rows"]) for i, s in enumerate(summaries)},
    }


def _count(grid: CountingGrid, nodes: list[int], job: dict[str, Any]) -> dict[str, Any]:
    content = RecordDict({"config": ConfigRecord({"job": json.dumps(job)})})
    per_site: dict[str, dict[str, float]] = {}
    for reply in _broadcast(grid, nodes, content, "query.count"):
        site = str(reply.content["site"]["site"])  # type: ignore[index]
        per_site[site] = {k: float(v) for k, v in reply.content["counts"].items()}  # type: ignore[union-attr,arg-type]
    return {"per_site": per_site}


def _validate(grid: CountingGrid, nodes: list[int], job: dict[str, Any]) -> dict[str, Any]:
    params = LogisticParams(np.asarray(job["coef"], dtype=np.float64), float(job["intercept"]))
    config = ConfigRecord(
        {"job": json.dumps(job.get("data", {})), "preprocessor": json.dumps(job["preprocessor"])}
    )
    content = RecordDict({"arrays": params_to_record(params), "config": config})
    per_site: dict[str, Any] = {}
    for reply in _broadcast(grid, nodes, content, "evaluate.validate"):
        site = str(reply.content["site"]["site"])  # type: ignore[index]
        per_site[site] = _metrics(reply.content["metrics"])  # type: ignore[arg-type]
    return {"per_site": per_site}


def _study(grid: CountingGrid, nodes: list[int], job: dict[str, Any]) -> dict[str, Any]:
    """A network study in one run: count a concept set, train a model, validate it at every hub.

    One run instead of three saves the run start-up (the ``flwr run`` client, the ServerApp process,
    the first polls) twice; the messages are the same as those of the three separate tasks.
    """
    count = _count(grid, nodes, dict(job.get("count", {})))
    train_job = dict(job.get("train", {}))
    trained = _train(grid, nodes, train_job)
    model = {k: trained[k] for k in ("coef", "intercept", "preprocessor")}
    data = {k: train_job[k] for k in ("source", "risk-task") if k in train_job}
    validation = _validate(grid, nodes, {**model, "data": data})
    return {"count": count, "train": trained, "validate": validation}


TASKS = {"train": _train, "count": _count, "validate": _validate, "study": _study}


@app.main()
def main(grid: Grid, context: Context) -> None:
    job_file = Path(str(context.run_config["job-file"]))
    job: dict[str, Any] = json.loads(job_file.read_text())
    result_file = Path(job["result-file"])
    started = time.perf_counter()
    try:
        task = TASKS.get(str(job.get("task")))
        if task is None:
            raise FederationError(f"unknown task {job.get('task')!r}; use one of {', '.join(TASKS)}")
        counting = CountingGrid(grid)
        nodes = _wait_for_nodes(counting, int(job.get("num-nodes", 1)))
        result = task(counting, nodes, job)
        result["bytes_exchanged"] = counting.bytes_sent + counting.bytes_received
        result["bytes_sent"] = counting.bytes_sent
        result["bytes_received"] = counting.bytes_received
        result["messages"] = counting.messages
        result["seconds_serverapp"] = time.perf_counter() - started
    except Exception as error:  # written for the caller, which raises FederationError with it
        result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    result_file.write_text(json.dumps(result))
