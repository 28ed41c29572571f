"""Characterization of a hub (OHDSI Achilles-style analyses) and its catalog entry.

``characterize(db, out_dir, release=...)`` runs the analyses and releases their counts through the
hub's ``Release``; ``build_catalog(db, hub, out_dir, release=...)`` describes the dataset for the network.
"""

from __future__ import annotations

from healthmesh.characterize.analyses import ANALYSES, ILI_CONCEPT_ID, Analysis
from healthmesh.characterize.catalog import build_catalog
from healthmesh.characterize.runner import characterize, ili_weekly, release_analysis

__all__ = [
    "ANALYSES",
    "ILI_CONCEPT_ID",
    "Analysis",
    "build_catalog",
    "characterize",
    "ili_weekly",
    "release_analysis",
]
