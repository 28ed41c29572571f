"""Run the analyses, pass every count through the hub's ``Release``, write JSON and charts.

A count of persons is perturbed by the key of its person set (``<column>_key`` from the analysis SQL,
over the record keys this module registers as ``hm_record_keys`` for the run): the same persons show
the same noise here, in the catalog, in a cohort count or a federated count, so no channel gives an
attacker a second draw of a set. Counts of records and visits are not sets of persons: characterization
is a fixed publication (the same analyses, the same cells, on every run), so they take label keys
(``Release.label_key``), as ``healthmesh.privacy.release`` allows for fixed publications.
Statistics (quantiles, means) are withheld over fewer than ``min_count`` persons; proportions are
computed from released counts only (an exact proportion times a released total gives the exact count).
No cell key leaves the hub: the ``*_key`` columns are dropped from what is released.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from healthmesh.cdm.database import HubDatabase
from healthmesh.characterize.analyses import ANALYSES, RECORD_KEYS, STATS, Analysis
from healthmesh.privacy.disclosure import (
    SUPPRESSED_COLUMN,
    assert_release_safe,
    frame_records,
    suppress_counts,
    suppress_statistics,
)
from healthmesh.privacy.release import Release

__all__ = ["characterize", "ili_weekly", "record_key_table", "release_analysis", "sql_key"]

_KEY = "_cell_key"
_MASK = (1 << 64) - 1


@contextmanager
def record_key_table(db: HubDatabase, release: Release) -> Iterator[None]:
    """Every person's record key, readable by SQL as ``hm_record_keys(person_id, rkey)`` meanwhile.

    ``rkey`` is the 64-bit record key as a signed BIGINT (PostgreSQL has no unsigned type); XOR does
    not care, and ``sql_key`` turns a ``bit_xor`` of them back into ``Release.person_key``'s value.
    """
    present = db.tables()
    ids = (
        db.df("SELECT person_id FROM person")["person_id"].to_numpy(dtype=np.int64)
        if "person" in present
        else np.zeros(0, dtype=np.int64)
    )
    frame = pd.DataFrame({"person_id": ids, "rkey": release.record_keys(ids).view(np.int64)})
    db.con.register(RECORD_KEYS, frame)
    try:
        yield
    finally:
        db.con.unregister(RECORD_KEYS)


def sql_key(value: Any) -> int:
    """A ``bit_xor`` of ``rkey`` as the unsigned cell key ``Release.person_key`` gives (0: no person)."""
    return 0 if value is None or pd.isna(value) else int(value) & _MASK


def _part(value: Any) -> Any:
    """A stratum value as a label part: the same text whichever engine (DuckDB, PostgreSQL) returned it."""
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _keys(frame: pd.DataFrame, analysis: Analysis, column: str, release: Release) -> list[int]:
    """Each row's cell key for ``column``: its person set's, else its label's."""
    if f"{column}_key" in frame.columns:
        return [sql_key(v) for v in frame[f"{column}_key"]]
    return [
        release.label_key(
            "characterization", analysis.analysis_id, column, *(_part(row[s]) for s in analysis.strata)
        )
        for row in frame.to_dict(orient="records")
    ]


def _release_column(frame: pd.DataFrame, analysis: Analysis, column: str, release: Release) -> pd.Series:
    """One column of counts, each cell through the release by its own key (rows already withheld stay NA)."""
    keys = _keys(frame, analysis, column, release)
    values = [
        pd.NA if pd.isna(v) else release.count(int(v), k) for v, k in zip(frame[column], keys, strict=True)
    ]
    return pd.Series(pd.array([pd.NA if v is None else v for v in values], dtype="Int64"), index=frame.index)


def _release_concepts(
    analysis: Analysis, frame: pd.DataFrame, release: Release, total_persons: int | None
) -> pd.DataFrame:
    """Persons and records per concept: a concept hidden in one column is hidden in both."""
    frame = frame.reset_index(drop=True)
    persons = _release_column(frame, analysis, "persons", release)
    records = _release_column(frame, analysis, "records", release)
    hidden = (persons.isna() | records.isna()).to_numpy()
    while True:  # complementary suppression until the two columns agree on what is hidden
        before = hidden.copy()
        for col in ("persons", "records"):
            forced = frame.assign(**{col: frame[col].where(~hidden, 1)})  # hidden cells count as small
            hidden |= suppress_counts(forced, col, ["concept_id"], release.min_count)[
                SUPPRESSED_COLUMN
            ].to_numpy()
        if (hidden == before).all():
            break
    out = frame.copy()
    out["persons"] = persons.mask(hidden)
    out["records"] = records.mask(hidden)
    out[SUPPRESSED_COLUMN] = hidden
    if total_persons:
        out["prevalence"] = (out["persons"].astype("Float64") / total_persons).round(6)
    else:
        out["prevalence"] = pd.NA
    return out


def release_analysis(
    analysis: Analysis, frame: pd.DataFrame, release: Release, total_persons: int | None = None
) -> pd.DataFrame:
    """The result of one analysis as it may leave the hub (``total_persons``: the released total)."""
    out = _release(analysis, frame, release, total_persons)
    return out.drop(columns=[c for c in out.columns if str(c).endswith("_key")])


def _release(
    analysis: Analysis, frame: pd.DataFrame, release: Release, total_persons: int | None
) -> pd.DataFrame:
    if analysis.kind == "concepts":
        return _release_concepts(analysis, frame, release, total_persons)
    if analysis.kind == "distribution":
        out = suppress_statistics(frame, "n_persons", STATS, release.min_count)
        out["n_persons"] = _release_column(out, analysis, "n_persons", release)
        records = pd.to_numeric(frame["count_value"]).fillna(0).astype("int64").reset_index(drop=True)
        out["count_value"] = _release_column(
            out.assign(count_value=records.astype("Int64")), analysis, "count_value", release
        )
        # A statistic is withheld with its persons or its records.
        small = (
            out[SUPPRESSED_COLUMN].to_numpy()
            | out["n_persons"].isna().to_numpy()
            | out["count_value"].isna().to_numpy()
        )
        out["n_persons"] = out["n_persons"].mask(small)
        out["count_value"] = out["count_value"].mask(small)
        for col in STATS:
            out[col] = pd.to_numeric(out[col].mask(small)).round(4)
        out[SUPPRESSED_COLUMN] = small
        return out
    keyed = frame.reset_index(drop=True)
    keyed = keyed.assign(**{_KEY: _keys(keyed, analysis, "count_value", release)})
    return release.table(keyed, "count_value", list(analysis.strata), key_col=_KEY)


def _run(
    db: HubDatabase, present: set[str], release: Release
) -> tuple[list[dict[str, Any]], dict[int, pd.DataFrame]]:
    released_total = None
    if "person" in present:
        total, key = db.rows(f"SELECT count(*), bit_xor(rkey) FROM {RECORD_KEYS}")[0]
        released_total = release.count(int(total), sql_key(key))
    results: list[dict[str, Any]] = []
    frames: dict[int, pd.DataFrame] = {}
    for analysis in ANALYSES:
        if any(t not in present for t in analysis.tables):
            continue
        started = time.perf_counter()
        released = release_analysis(analysis, db.df(analysis.sql), release, released_total)
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
    *,
    release: Release,
    hub: str | None = None,
    charts: bool = True,
) -> dict[str, Any]:
    """Run every analysis on the hub; returns the released document (``characterization.json``).

    With ``out_dir`` the document is written there, beside PNG charts of the main analyses.
    """
    min_count = release.min_count
    started = time.perf_counter()
    present = db.tables()
    with record_key_table(db, release):
        results, frames = _run(db, present, release)
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


def ili_weekly(db: HubDatabase, release: Release) -> pd.DataFrame:
    """ILI visits per region and ISO week, as released, as a long frame ``unique_id, ds, y``.

    ``ds`` is the Monday of the ISO week; ``y`` is NaN where the count was withheld. The values are
    those of analysis 9001 in the characterization (the same cells, the same noise).
    """
    analysis = next(a for a in ANALYSES if a.analysis_id == 9001)
    released = release_analysis(analysis, db.df(analysis.sql), release)
    return pd.DataFrame(
        {
            "unique_id": released["region"].astype(str),
            "ds": pd.to_datetime(released["week_start"]),
            "y": released["count_value"].astype("Float64").astype(float),
        }
    ).sort_values(["unique_id", "ds"], ignore_index=True)
