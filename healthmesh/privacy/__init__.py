"""Privacy at the hub's door: keyed pseudonyms, disclosure control, re-identification risk, identifier scans.

Every number that leaves a hub passes a ``healthmesh.privacy.release.Release`` (threshold and
cell-key perturbation, over ``healthmesh.privacy.disclosure``'s small-cell and complementary
suppression); ``kanonymity`` measures and reduces re-identification risk of
extracts; ``scan`` finds direct identifiers in text columns and exports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from healthmesh.privacy.disclosure import (
        COUNT_KEYS,
        DEFAULT_MIN_COUNT,
        assert_release_safe,
        check_min_count,
        frame_records,
        safe_count,
        suppress_counts,
        suppress_statistics,
    )
    from healthmesh.privacy.kanonymity import RiskReport, anonymize, generalize, person_extract, risk_report
    from healthmesh.privacy.pseudonym import PSEUDONYM_LENGTH, pseudonym, register_pseudonym_function
    from healthmesh.privacy.release import Release
    from healthmesh.privacy.scan import ScanReport, scan_database, scan_file, scan_text

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_MIN_COUNT",
    "PSEUDONYM_LENGTH",
    "Release",
    "RiskReport",
    "ScanReport",
    "anonymize",
    "assert_release_safe",
    "check_min_count",
    "frame_records",
    "generalize",
    "person_extract",
    "pseudonym",
    "register_pseudonym_function",
    "risk_report",
    "safe_count",
    "scan_database",
    "scan_file",
    "scan_text",
    "suppress_counts",
    "suppress_statistics",
]

# Submodules load on first use: ingest needs only the pseudonym, not pandas (disclosure, kanonymity).
_HOME = {
    **dict.fromkeys(
        (
            "COUNT_KEYS",
            "DEFAULT_MIN_COUNT",
            "assert_release_safe",
            "check_min_count",
            "frame_records",
            "safe_count",
            "suppress_counts",
            "suppress_statistics",
        ),
        "disclosure",
    ),
    **dict.fromkeys(("RiskReport", "anonymize", "generalize", "person_extract", "risk_report"), "kanonymity"),
    **dict.fromkeys(("PSEUDONYM_LENGTH", "pseudonym", "register_pseudonym_function"), "pseudonym"),
    **dict.fromkeys(("ScanReport", "scan_database", "scan_file", "scan_text"), "scan"),
    "Release": "release",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
