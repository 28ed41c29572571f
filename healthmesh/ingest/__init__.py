"""Collect and integrate: FHIR R4 (Bundles, Bulk NDJSON) and Synthea CSV into the hub's CDM.

Everything is staged into one table and mapped by one set of SQL statements (``map.py``), for
the bulk path and for a single posted Bundle alike. ``synth`` generates regional populations.
"""

from __future__ import annotations

from healthmesh.ingest.load import ingest_bundle, ingest_paths, report_path_for
from healthmesh.ingest.report import IngestReport
from healthmesh.ingest.synthetic_hub import build_synthetic_hub

__all__ = ["IngestReport", "build_synthetic_hub", "ingest_bundle", "ingest_paths", "report_path_for"]
