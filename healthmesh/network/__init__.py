"""The network's coordinator: registered hubs, researchers, studies, their states and results.

``store`` keeps them (SQLite, one transaction per change), ``studies`` checks what a researcher
asks and adds up what hubs released, ``app`` is the coordinator's API (``healthmesh network
serve``), ``client`` is a researcher's client of it. A hub's side (its agent that pulls studies
and answers through the hub's own service) lives with the hub service: ``healthmesh.api.agent``.
"""

from healthmesh.network.store import Caller, NetworkStore, StudyConflict, StudyNotFound
from healthmesh.network.studies import LIVE_KINDS, StudyRequest, combine_results

__all__ = [
    "LIVE_KINDS",
    "Caller",
    "NetworkStore",
    "StudyConflict",
    "StudyNotFound",
    "StudyRequest",
    "combine_results",
]
