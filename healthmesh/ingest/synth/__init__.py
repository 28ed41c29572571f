"""Synthetic regional populations for the hubs, written as FHIR R4 Bulk NDJSON."""

from __future__ import annotations

from healthmesh.ingest.synth.generate import generate_population
from healthmesh.ingest.synth.regions import REGIONS, Region, region_for

__all__ = ["REGIONS", "Region", "generate_population", "region_for"]
