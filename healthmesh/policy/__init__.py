"""The hub's federated policy (a data file the hub admin owns); see ``model.py``."""

from healthmesh.policy.model import (
    DEFAULT_POLICY,
    OPERATIONS,
    HubPolicy,
    PolicyRefusal,
    TaskDefinition,
    TrainingLimits,
    load_policy,
)

__all__ = [
    "DEFAULT_POLICY",
    "OPERATIONS",
    "HubPolicy",
    "PolicyRefusal",
    "TaskDefinition",
    "TrainingLimits",
    "load_policy",
]
