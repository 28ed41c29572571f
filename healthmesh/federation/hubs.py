"""Domain functions over a network of hub CDMs, for ``healthmesh demo`` and the CLI.

```python
with start_hub_network({"gwangju": db1, "gyeonggi": db2, "busan": db3}, workdir) as network:
    counts = federated_count(network, [201826])
    model = federated_train_diabetes(network, strategy="fedavg", rounds=5)
    report = federated_validate(network, model)
```
The coordinator sums counts that each hub has already suppressed; a suppressed hub cell makes the
network total a lower bound, which the result says (``complete: false``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthmesh.errors import FederationError
from healthmesh.federation.guard import SUPPRESSED
from healthmesh.federation.network import FlowerNetwork
from healthmesh.federation.server_app import STRATEGIES

if TYPE_CHECKING:
    from healthmesh.config import Settings

__all__ = [
    "combine_counts",
    "federated_count",
    "federated_study",
    "federated_train_diabetes",
    "federated_validate",
    "start_hub_network",
]


def start_hub_network(
    hub_dbs: Mapping[str, Path | str],
    workdir: Path,
    *,
    tls: bool = True,
    min_cell: int = 5,
    audit_dir: Path | None = None,
    policy: Path | None = None,
    settings: Settings | None = None,
    release_keys: Mapping[str, bytes] | None = None,
) -> FlowerNetwork:
    """Start a SuperLink and one SuperNode per hub (node config ``db=PATH``); returns the running network.

    Each hub's release key is its own (``hub_keys(settings, db).release``: the configured secret,
    else the key file beside its database), so its released counts carry the same noise here as in
    its hub service; ``release_keys`` (hub name: ``HubKeys.release``) gives them instead.
    ``policy`` is the hub policy file (default: the one shipped with healthmesh).
    Use it as a context manager (or call ``stop()``): it ends every process it started.
    """
    from healthmesh.config import Settings, hub_keys

    settings = settings or Settings(secret_key=None)
    configs: dict[str, dict[str, str | int | float | bool]] = {}
    keys: dict[str, bytes] = {}
    for name, db in hub_dbs.items():
        path = Path(db).resolve()
        if not path.is_file():
            raise FederationError(f"hub {name!r}: database {str(path)!r} not found; ingest the hub first")
        configs[name] = {"db": str(path), "min-cell": int(min_cell)}
        keys[name] = (release_keys or {}).get(name) or hub_keys(settings, path).release
        if audit_dir is not None:
            configs[name]["audit-dir"] = str(Path(audit_dir).resolve())
    return FlowerNetwork(workdir, configs, tls=tls, policy=policy, release_keys=keys).start()


def combine_counts(per_site: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Sum the hubs' released counts; a cell suppressed at some hub gives a lower bound."""
    keys = sorted({k for counts in per_site.values() for k in counts})
    totals: dict[str, Any] = {}
    for key in keys:
        values = [counts.get(key, 0) for counts in per_site.values()]
        suppressed = [site for site, counts in per_site.items() if counts.get(key, 0) == SUPPRESSED]
        totals[key] = {
            "count": int(sum(v for v in values if v != SUPPRESSED)),
            "complete": not suppressed,
            "suppressed_at": suppressed,
        }
    return totals


def federated_count(
    network: FlowerNetwork,
    concept_ids: Sequence[int],
    *,
    include_descendants: bool = True,
    characterize: bool = True,
) -> dict[str, Any]:
    """Persons with any event in the concept set, per hub (suppressed there) and summed over hubs."""
    job = {
        "task": "count",
        "concept_ids": [int(c) for c in concept_ids],
        "include_descendants": include_descendants,
        "characterize": characterize,
    }
    result = network.run(job)
    per_site = {site: {k: int(v) for k, v in counts.items()} for site, counts in result["per_site"].items()}
    return {
        "concept_ids": job["concept_ids"],
        "per_site": per_site,
        "network": combine_counts(per_site),
        "bytes_exchanged": result["bytes_exchanged"],
        "seconds": result["seconds_serverapp"],
    }


def federated_train_diabetes(
    network: FlowerNetwork,
    *,
    strategy: str = "fedavg",
    rounds: int = 5,
    lr: float = 1.0,
    local_steps: int = 5,
    risk_task: str = "t2dm-3y",
    seed: int = 42,
) -> dict[str, Any]:
    """Federated logistic regression of a risk task (default: type 2 diabetes within 3 years) over the hubs' CDMs.

    ``risk_task`` names a ``healthmesh.risk`` task (population and covariates from the risk package).
    Returns the model (``coef``, ``intercept``, ``preprocessor``, ``feature_names``) and each hub's
    metrics on its own held-out part (``evaluation``).
    """
    if strategy not in STRATEGIES:
        raise FederationError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    job = {
        "task": "train",
        "source": "cdm",
        "risk-task": risk_task,
        "seed": seed,
        "strategy": strategy,
        "rounds": rounds,
        "lr": lr,
        "local-steps": local_steps,
    }
    result = network.run(job)
    return {
        "task": risk_task,
        "strategy": strategy,
        "rounds": rounds,
        "coef": result["coef"],
        "intercept": result["intercept"],
        "preprocessor": result["preprocessor"],
        "feature_names": result["feature_names"],
        "evaluation": result["evaluation"],
        "bytes_exchanged": result["bytes_exchanged"],
        "seconds": result["seconds_serverapp"],
        "data": {"source": "cdm", "risk-task": risk_task},
    }


def federated_validate(network: FlowerNetwork, model: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate a model (as returned by a federated training) on all rows of every hub; metrics only."""
    for key in ("coef", "intercept", "preprocessor"):
        if key not in model:
            raise FederationError(f"model lacks {key!r}; pass the dict returned by federated_train_*")
    job = {
        "task": "validate",
        "coef": list(model["coef"]),
        "intercept": float(model["intercept"]),
        "preprocessor": dict(model["preprocessor"]),
        "data": dict(model.get("data", {"source": "cdm", "risk-task": "t2dm-3y"})),
    }
    result = network.run(job)
    return {
        "per_site": result["per_site"],
        "bytes_exchanged": result["bytes_exchanged"],
        "seconds": result["seconds_serverapp"],
    }


def federated_study(
    network: FlowerNetwork,
    concept_ids: Sequence[int],
    *,
    strategy: str = "fedavg",
    rounds: int = 5,
    risk_task: str = "t2dm-3y",
    lr: float = 1.0,
    local_steps: int = 5,
    seed: int = 42,
) -> dict[str, Any]:
    """Count, train and validate in ONE Flower run (saves two run start-ups, ~15-30 s each here).

    Returns ``{"count": <as federated_count>, "model": <as federated_train_diabetes>,
    "validation": <as federated_validate>, "bytes_exchanged", "seconds"}``.
    """
    if strategy not in STRATEGIES:
        raise FederationError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    train = {
        "source": "cdm",
        "risk-task": risk_task,
        "seed": seed,
        "strategy": strategy,
        "rounds": rounds,
        "lr": lr,
        "local-steps": local_steps,
    }
    count = {"concept_ids": [int(c) for c in concept_ids], "include_descendants": True, "characterize": True}
    result = network.run({"task": "study", "count": count, "train": train})
    per_site = {
        site: {k: int(v) for k, v in counts.items()} for site, counts in result["count"]["per_site"].items()
    }
    trained = result["train"]
    return {
        "count": {
            "concept_ids": count["concept_ids"],
            "per_site": per_site,
            "network": combine_counts(per_site),
        },
        "model": {
            "task": risk_task,
            "strategy": strategy,
            "rounds": rounds,
            "coef": trained["coef"],
            "intercept": trained["intercept"],
            "preprocessor": trained["preprocessor"],
            "feature_names": trained["feature_names"],
            "evaluation": trained["evaluation"],
            "data": {"source": "cdm", "risk-task": risk_task},
        },
        "validation": {"per_site": result["validate"]["per_site"]},
        "bytes_exchanged": result["bytes_exchanged"],
        "seconds": result["seconds_serverapp"],
    }
