"""``federate train-table``: federated logistic regression over one table per site, with baselines.

Starts a SuperLink and one SuperNode per site on loopback, trains with the chosen strategy, and
compares on the same held-out split of every site: the federated model (pooled over the sites'
test parts and per site), a centralised model on the pooled training parts, and each site's local
model. The baselines read the files directly: whoever runs this command holds every table (it is a
benchmark of the federation, not a deployment); in a deployment only the federated part runs.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from healthmesh.errors import FederationError
from healthmesh.federation.logreg import LogisticParams, predict_proba, roc_auc
from healthmesh.federation.network import FlowerNetwork
from healthmesh.federation.preprocess import AgreedPreprocessor
from healthmesh.federation.server_app import STRATEGIES
from healthmesh.federation.sitedata import DEFAULT_SEED, DEFAULT_TEST_FRACTION, SiteData, split_rows

__all__ = ["TrainTableSettings", "baseline_aurocs", "train_table"]


class TrainTableSettings(dict[str, Any]):
    """The job settings (learning rate, local steps, ...); plain keys as the ServerApp reads them."""


def _read_sites(
    sites: Mapping[str, Path], target: str, positive: str | None, seed: int, test_fraction: float
) -> dict[str, SiteData]:
    from healthmesh.risk.tables import read_table

    out: dict[str, SiteData] = {}
    for name, path in sites.items():
        table = read_table(Path(path), target, positive=positive)
        out[name] = split_rows(table.X, table.y, test_fraction=test_fraction, seed=seed)
    return out


def _sklearn_auroc(train_X: pd.DataFrame, train_y: np.ndarray, C: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from healthmesh.risk.tables import make_preprocessor

    model = make_pipeline(make_preprocessor(train_X), LogisticRegression(C=C, max_iter=5000))
    model.fit(train_X, train_y)
    return model


def baseline_aurocs(data: Mapping[str, SiteData], C: float = 1.0) -> dict[str, Any]:
    """Centralised (pooled training parts) and local (own training part) AUROCs on the held-out parts."""
    pooled_X = pd.concat([d.X_train for d in data.values()], ignore_index=True)
    pooled_y = np.concatenate([d.y_train for d in data.values()])
    test_X = pd.concat([d.X_test for d in data.values()], ignore_index=True)
    test_y = np.concatenate([d.y_test for d in data.values()])
    central = _sklearn_auroc(pooled_X, pooled_y, C)
    central_score = central.predict_proba(test_X.reindex(columns=pooled_X.columns))[:, 1]
    out: dict[str, Any] = {
        "centralised_auroc": roc_auc(test_y, central_score),
        "centralised_accuracy": float(np.mean((central_score >= 0.5) == test_y)),
        "centralised_auroc_per_site": {
            name: roc_auc(d.y_test, central.predict_proba(d.X_test.reindex(columns=pooled_X.columns))[:, 1])
            for name, d in data.items()
        },
        "local_auroc_per_site": {},
    }
    for name, d in data.items():
        if len(np.unique(d.y_train)) < 2:
            out["local_auroc_per_site"][name] = float("nan")
            continue
        local = _sklearn_auroc(d.X_train, d.y_train, C)
        out["local_auroc_per_site"][name] = roc_auc(d.y_test, local.predict_proba(d.X_test)[:, 1])
    return out


def federated_aurocs(data: Mapping[str, SiteData], result: Mapping[str, Any]) -> dict[str, Any]:
    """AUROC of the federated model on the pooled held-out parts and on each site's."""
    spec = AgreedPreprocessor.from_dict(result["preprocessor"])
    params = LogisticParams(np.asarray(result["coef"]), float(result["intercept"]))
    scores = {name: predict_proba(params, spec.transform(d.X_test)) for name, d in data.items()}
    test_y = np.concatenate([d.y_test for d in data.values()])
    pooled_score = np.concatenate(list(scores.values()))
    return {
        "federated_auroc": roc_auc(test_y, pooled_score),
        "federated_accuracy": float(np.mean((pooled_score >= 0.5) == test_y)),
        "federated_auroc_per_site": {name: roc_auc(data[name].y_test, s) for name, s in scores.items()},
    }


def train_table(
    sites: Mapping[str, Path],
    target: str,
    out_dir: Path,
    *,
    strategy: str = "fedavg",
    rounds: int = 10,
    positive: str | None = None,
    seed: int = DEFAULT_SEED,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    lr: float = 1.0,
    local_steps: int = 5,
    proximal_mu: float = 0.5,
    server_lr: float = 0.1,
    C: float = 1.0,
    tls: bool = True,
    workdir: Path | None = None,
    audit_dir: Path | None = None,
    policy: Path | None = None,
) -> dict[str, Any]:
    """Run the federation and the baselines; write ``out_dir/metrics.json`` and return its content."""
    if strategy not in STRATEGIES:
        raise FederationError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if rounds < 1:
        raise FederationError(f"rounds must be at least 1; got {rounds}")
    if len(sites) < 2:
        raise FederationError(f"a federation needs at least 2 sites; got {len(sites)}")
    for name, path in sites.items():
        if not Path(path).is_file():
            raise FederationError(
                f"site {name!r}: table {str(path)!r} not found; give NAME=FILE with an existing file"
            )
    started = time.perf_counter()
    data = _read_sites(sites, target, positive, seed, test_fraction)  # fails early on a bad table

    job: dict[str, Any] = {
        "task": "train",
        "source": "table",
        "target": target,
        "positive": positive or "",
        "seed": seed,
        "test-fraction": test_fraction,
        "strategy": strategy,
        "rounds": rounds,
        "lr": lr,
        "local-steps": local_steps,
        "proximal-mu": proximal_mu,
        "server-lr": server_lr,
        "C": C,
    }
    node_configs: dict[str, dict[str, str | int | float | bool]] = {}
    for name, path in sites.items():
        node_configs[name] = {"table": str(Path(path).resolve())}
        if audit_dir is not None:
            node_configs[name]["audit-dir"] = str(Path(audit_dir).resolve())
    with tempfile.TemporaryDirectory(prefix="healthmesh-flower-") as tmp:
        network = FlowerNetwork(Path(workdir) if workdir else Path(tmp), node_configs, tls=tls, policy=policy)
        with network:
            network_ready = time.perf_counter()
            result = network.run(job)
    seconds = time.perf_counter() - started

    metrics: dict[str, Any] = {
        "strategy": strategy,
        "rounds": rounds,
        "sites": {name: str(path) for name, path in sites.items()},
        "target": target,
        **federated_aurocs(data, result),
        **baseline_aurocs(data, C),
        "federated_evaluation_reported_by_hubs": result["evaluation"],
        "bytes_exchanged": int(result["bytes_exchanged"]),
        "messages": int(result["messages"]),
        "seconds": round(seconds, 2),
        "seconds_network_start": round(network_ready - started, 2),
        "seconds_training_serverapp": round(float(result["seconds_serverapp"]), 2),
        "settings": {k: v for k, v in job.items() if k not in ("task", "source")},
        "tls": tls,
        "train_loss_per_round": [r.get("train-loss") for r in result["rounds"]],
        "feature_names": result["feature_names"],
        "coef": result["coef"],
        "intercept": result["intercept"],
    }
    metrics["federated_minus_centralised"] = metrics["federated_auroc"] - metrics["centralised_auroc"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = _finite(metrics)
    (out_dir / "metrics.json").write_text(
        json.dumps(metrics, indent=2, default=_json_default, allow_nan=False)
    )
    return metrics


def _finite(value: Any) -> Any:
    """NaN (an AUROC on a part with one class) becomes null, so metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-able: {type(value).__name__}")
