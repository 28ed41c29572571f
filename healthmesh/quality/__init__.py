"""Data-quality checks over a hub's CDM (OHDSI DQD-style, Kahn framework) and their report.

``run_quality(db, out_dir)`` generates the checks from the CDM v5.4 field-level spec and the
thresholds file, runs them as batched set-based SQL and writes ``quality.json`` and ``quality.html``.
"""

from __future__ import annotations

from healthmesh.quality.checks import Check, build_checks
from healthmesh.quality.checktypes import CHECK_TYPES, CheckType
from healthmesh.quality.report import CheckResult, QualityReport
from healthmesh.quality.runner import present_columns, run_checks, run_quality
from healthmesh.quality.sample import insert_sample_population, load_cdm_csv
from healthmesh.quality.thresholds import Thresholds, load_thresholds

__all__ = [
    "CHECK_TYPES",
    "Check",
    "CheckResult",
    "CheckType",
    "QualityReport",
    "Thresholds",
    "build_checks",
    "insert_sample_population",
    "load_cdm_csv",
    "load_thresholds",
    "present_columns",
    "run_checks",
    "run_quality",
]
