"""Characterization of a hub (OHDSI Achilles-style analyses) and its catalog entry.

``characterize(db, out_dir, min_count)`` runs the analyses and releases only suppressed aggregates;
``build_catalog(db, hub, out_dir, min_count)`` describes the dataset for the network.
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
