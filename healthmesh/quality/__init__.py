"""Data-quality checks over a hub's CDM and their report: OHDSI DQD v2.8's checks and our own.

``run_quality(db, out_dir, release=...)`` runs DQD's 2,374 checks (``dqd``: DQD's check list,
thresholds and verdicts, our SQL) and our checks (from the CDM v5.4 field-level spec and the
thresholds file) as batched set-based SQL, and writes the released ``quality.json`` and
``quality.html``; ``dqd_file=`` writes DQD's result JSON with exact counts for the hub's
administrator.
"""

from __future__ import annotations

from healthmesh.quality.checks import Check, build_checks
from healthmesh.quality.checktypes import CHECK_TYPES, CheckType
from healthmesh.quality.dqd import DqdResult, DqdSpec, dqd_checks
from healthmesh.quality.report import CheckResult, QualityReport
from healthmesh.quality.runner import present_columns, run_checks, run_quality
from healthmesh.quality.sample import insert_sample_population, load_cdm_csv
from healthmesh.quality.thresholds import Thresholds, load_thresholds

__all__ = [
    "CHECK_TYPES",
    "Check",
    "CheckResult",
    "CheckType",
    "DqdResult",
    "DqdSpec",
    "QualityReport",
    "Thresholds",
    "build_checks",
    "dqd_checks",
    "insert_sample_population",
    "load_cdm_csv",
    "load_thresholds",
    "present_columns",
    "run_checks",
    "run_quality",
]
