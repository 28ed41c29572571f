"""Federation on Flower: a coordinator's SuperLink and one SuperNode per hub, as plain processes.

Hubs answer in aggregates and model parameters only (``guard.hub_guard`` checks every reply),
within their own policy (``healthmesh.policy``), with every count through their release path.
Only registered SuperNodes join, and each hub runs only its installed ClientApp, in its own app
process with a scrubbed environment (``network``, ``app_process``).
Jobs: federated logistic regression (FedAvg, FedProx, FedAdam) over tables or hub CDMs, federated
concept-set counts, and federated external validation.

The names below load on first use: the hub's app process imports
``healthmesh.federation.client_app``, and it should not pay for the coordinator's modules.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from healthmesh.federation.hubs import (
        combine_counts,
        federated_count,
        federated_study,
        federated_train_diabetes,
        federated_validate,
        start_hub_network,
    )
    from healthmesh.federation.network import FlowerNetwork
    from healthmesh.federation.server_app import STRATEGIES
    from healthmesh.federation.tabletrain import train_table
    from healthmesh.federation.tls import TlsFiles, make_self_signed_tls

__all__ = [
    "STRATEGIES",
    "FlowerNetwork",
    "TlsFiles",
    "combine_counts",
    "federated_count",
    "federated_study",
    "federated_train_diabetes",
    "federated_validate",
    "make_self_signed_tls",
    "start_hub_network",
    "train_table",
]

_HOMES = {
    "FlowerNetwork": "network",
    "STRATEGIES": "server_app",
    "TlsFiles": "tls",
    "combine_counts": "hubs",
    "federated_count": "hubs",
    "federated_study": "hubs",
    "federated_train_diabetes": "hubs",
    "federated_validate": "hubs",
    "make_self_signed_tls": "tls",
    "start_hub_network": "hubs",
    "train_table": "tabletrain",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(import_module(f"healthmesh.federation.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
