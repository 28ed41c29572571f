"""Federation on Flower: a coordinator's SuperLink and one SuperNode per hub, as plain processes.

Hubs answer in aggregates and model parameters only (``guard.hub_guard`` checks every reply).
Jobs: federated logistic regression (FedAvg, FedProx, FedAdam) over tables or hub CDMs, federated
concept-set counts with small-cell suppression, and federated external validation.
"""

from __future__ import annotations

from healthmesh.federation.hubs import (
    combine_counts,
    federated_count,
    federated_train_diabetes,
    federated_validate,
    start_hub_network,
)
from healthmesh.federation.network import FlowerNetwork
from healthmesh.federation.server_app import STRATEGIES
from healthmesh.federation.tabletrain import train_table
from healthmesh.federation.tls import TlsFiles, make_self_signed_tls

__all__ = [
    "FlowerNetwork",
    "STRATEGIES",
    "TlsFiles",
    "combine_counts",
    "federated_count",
    "federated_train_diabetes",
    "federated_validate",
    "make_self_signed_tls",
    "start_hub_network",
    "train_table",
]
