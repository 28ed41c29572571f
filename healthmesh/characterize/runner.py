"""Run the analyses, pass every result through disclosure control, write JSON and charts."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from healthmesh.cdm.database import HubDatabase
from healthmesh.characterize.analyses import ANALYSES, STATS, Analysis
from healthmesh.privacy.disclosure import (
    assert_release_safe,
    check_min_count,
    frame_records,
    safe_count,
    suppress_counts,
    suppress_statistics,
)

__all__ = ["characterize", "ili_weekly", "release_analysis"]


def _suppress_concepts(frame: pd.DataFrame, total_persons: int | None, min_count: int) -> pd.DataFrame:
    """Persons and records per concept: a concept hidden in one column is hidden in both."""
    frame = frame.reset_index(drop=True)
    hidden = pd.Series(False, index=frame.index)
    while True:  # until the persons and records columns agree on what is hidden
        before = hidden.copy()
        for col in ("persons", "records"):
            forced = frame.assign(**{col: frame[col].where(~hidden, 1)})  # hidden cells count as small
            hidden |= suppress_counts(forced, col, ["concept_id"], min_count)["suppressed"].to_numpy()
        if hidden.equals(before):
            break
    out = frame.copy()
    out["persons"] = frame["persons"].astype("Int64").mask(hidden)
    out["records"] = frame["records"].astype("Int64").mask(hidden)
    out["suppressed"] = hidden.to_numpy()
    if total_persons:
        out["prevalence"] = (out["persons"].astype("Float64") / total_persons).round(6)
    else:
        out["prevalence"] = pd.NA
    return out


def release_analysis(
    analysis: Analysis, frame: pd.DataFrame, min_count: int, total_persons: int | None = None
) -> pd.DataFrame:
    """The result of one analysis as it may leave the hub."""
    if analysis.kind == "concepts":
        return _suppress_concepts(frame, total_persons, min_count)
    if analysis.kind == "distribution":
        out = suppress_statistics(frame, "n_persons", STATS, min_count)
        # Records behind a statistic: withheld with it, or when themselves small.
        records = pd.to_numeric(frame["count_value"]).fillna(0).astype("int64")
        small = out["suppressed"].to_numpy() | ((records > 0) & (records < min_count)).to_numpy()
        out["count_value"] = records.astype("Int64").mask(small)
        for col in STATS:
            out[col] = pd.to_numeric(out[col]).round(4)
        return out
    return suppress_counts(frame, "count_value", list(analysis.strata), min_count)


def _run(
    db: HubDatabase, present: set[str], min_count: int
) -> tuple[list[dict[str, Any]], dict[int, pd.DataFrame]]:
    total = int(db.scalar("SELECT count(*) FROM person")) if "person" in present else 0
    safe_total = safe_count(total, min_count)
    results: list[dict[str, Any]] = []
    frames: dict[int, pd.DataFrame] = {}
    for analysis in ANALYSES:
        if any(t not in present for t in analysis.tables):
            continue
        started = time.perf_counter()
        released = release_analysis(analysis, db.df(analysis.sql), min_count, safe_total)
        frames[analysis.analysis_id] = released
        results.append(
            {
                "analysis_id": analysis.analysis_id,
                "name": analysis.name,
                "kind": analysis.kind,
                "strata": list(analysis.strata),
                "counts": analysis.counts,
                "seconds": round(time.perf_counter() - started, 3),
                "rows": frame_records(released),
            }
        )
    return results, frames


def characterize(
    db: HubDatabase,
    out_dir: str | Path | None = None,
    min_count: int = 5,
    hub: str | None = None,
    charts: bool = True,
) -> dict[str, Any]:
    """Run every analysis on the hub; returns the released document (``characterization.json``).

    With ``out_dir`` the document is written there, beside PNG charts of the main analyses.
    """
    check_min_count(min_count)
    started = time.perf_counter()
    present = db.tables()
    results, frames = _run(db, present, min_count)
    document: dict[str, Any] = {
        "hub": hub,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "min_count": min_count,
        "analyses": results,
        "duration_s": round(time.perf_counter() - started, 3),
    }
    assert_release_safe(document, min_count)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if charts:
            from healthmesh.characterize.charts import write_charts

            document["charts"] = write_charts(frames, out)
        (out / "characterization.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    return document


def ili_weekly(db: HubDatabase, min_count: int = 5) -> pd.DataFrame:
    """ILI visits per region and ISO week, suppressed, as a long frame ``unique_id, ds, y``.

    ``ds`` is the Monday of the ISO week; ``y`` is NaN where the count was withheld.
    """
    analysis = next(a for a in ANALYSES if a.analysis_id == 9001)
    released = release_analysis(analysis, db.df(analysis.sql), min_count)
    return pd.DataFrame(
        {
            "unique_id": released["region"].astype(str),
            "ds": pd.to_datetime(released["week_start"]),
            "y": released["count_value"].astype("Float64").astype(float),
        }
    ).sort_values(["unique_id", "ds"], ignore_index=True)
