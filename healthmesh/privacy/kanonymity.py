"""Re-identification risk of an extract: k-anonymity, l-diversity, and generalisation to reach k.

A small pandas implementation of ARX's model (no offline Python library fits: ARX is Java, and
the Python ports on PyPI are unmaintained). Quasi-identifiers get generalisation hierarchies (age:
5, 10, 20 years, then ``*``; region: province, macro-region, ``*``; zip: 3, 2 digits, ``*``; any
other column: value, then ``*``). ``anonymize`` searches the whole lattice of hierarchy levels,
as ARX's optimal search does on small lattices, and keeps the node with the least information loss
whose records in classes below k (or below l distinct sensitive values) are few enough to suppress.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from healthmesh.cdm.database import HubDatabase
from healthmesh.errors import PrivacyError

__all__ = ["RiskReport", "anonymize", "generalize", "person_extract", "risk_report"]

# Korean provinces (ISO 3166-2:KR) to the macro-regions used in national statistics.
_MACRO_REGION = {
    "KR-11": "capital", "KR-28": "capital", "KR-41": "capital",
    "KR-26": "yeongnam", "KR-27": "yeongnam", "KR-31": "yeongnam", "KR-47": "yeongnam", "KR-48": "yeongnam",
    "KR-29": "honam", "KR-45": "honam", "KR-46": "honam",
    "KR-30": "chungcheong", "KR-36": "chungcheong", "KR-43": "chungcheong", "KR-44": "chungcheong",
    "KR-42": "gangwon", "KR-51": "gangwon", "KR-49": "jeju", "KR-50": "jeju",
}  # fmt: skip


@dataclass
class RiskReport:
    records: int
    quasi_identifiers: list[str]
    k: int  # size of the smallest equivalence class
    classes: int
    k_target: int
    at_risk_share: float  # share of records in classes smaller than k_target
    sensitive: str | None = None
    l_diversity: int | None = None  # fewest distinct sensitive values in a class
    levels: dict[str, int] = field(default_factory=dict)
    suppressed_records: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _age(value: Any, level: int) -> str:
    if pd.isna(value):
        return "*"
    width = (5, 10, 20)[level] if level < 3 else 0
    if not width:
        return "*"
    low = int(value) // width * width
    return f"{low}-{low + width - 1}"


def _region(value: Any, level: int) -> str:
    if pd.isna(value) or level >= 2:
        return "*"
    return str(value) if level == 0 else _MACRO_REGION.get(str(value), str(value)[:2])


def _zip(value: Any, level: int) -> str:
    if pd.isna(value) or level >= 2:
        return "*"
    text = str(value)
    return text if level == 0 else text[:2] + "*"


def _plain(value: Any, level: int) -> str:
    return "*" if level >= 1 or pd.isna(value) else str(value)


_HIERARCHIES: dict[str, tuple[int, Callable[[Any, int], str]]] = {
    "age": (4, _age),
    "region": (3, _region),
    "zip": (3, _zip),
}


def _hierarchy(column: str) -> tuple[int, Callable[[Any, int], str]]:
    return _HIERARCHIES.get(column, (2, _plain))


def generalize(frame: pd.DataFrame, levels: dict[str, int]) -> pd.DataFrame:
    """A copy of ``frame`` with each column in ``levels`` generalised to that hierarchy level."""
    out = frame.copy()
    for column, level in levels.items():
        _, fn = _hierarchy(column)
        values = out[column]
        mapping = {v: fn(v, level) for v in values.dropna().unique()}
        out[column] = values.map(mapping).fillna("*").astype(str)
    return out


def _check_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PrivacyError(f"columns {missing} are not in the extract; it has {list(frame.columns)}")


def _class_stats(
    frame: pd.DataFrame, qis: list[str], sensitive: str | None
) -> tuple[pd.Series, pd.Series | None]:
    """Per record: the size of its equivalence class and (with ``sensitive``) its distinct values."""
    keys = frame[qis].astype(str)
    grouped = frame.assign(_k=1).groupby([keys[c] for c in qis], dropna=False)
    sizes = grouped["_k"].transform("size")
    diversity = grouped[sensitive].transform("nunique") if sensitive else None
    return sizes, diversity


def risk_report(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    sensitive: str | None = None,
    k_target: int = 5,
) -> RiskReport:
    """k-anonymity, l-diversity and the share of records at risk of ``frame`` as it is."""
    qis = list(quasi_identifiers)
    _check_columns(frame, qis + ([sensitive] if sensitive else []))
    if frame.empty:
        raise PrivacyError("the extract has no records; nothing to assess")
    sizes, diversity = _class_stats(frame, qis, sensitive)
    return RiskReport(
        records=len(frame),
        quasi_identifiers=qis,
        k=int(sizes.min()),
        classes=int(frame[qis].astype(str).drop_duplicates().shape[0]),
        k_target=k_target,
        at_risk_share=round(float((sizes < k_target).mean()), 6),
        sensitive=sensitive,
        l_diversity=int(diversity.min()) if diversity is not None else None,
    )


def anonymize(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    k: int,
    sensitive: str | None = None,
    l_diversity: int | None = None,
    max_suppression: float = 0.05,
) -> tuple[pd.DataFrame, RiskReport]:
    """Generalise and suppress ``frame`` until every class has >= k records (and >= l sensitive values).

    Returns the extract (quasi-identifiers generalised, records of too-small classes removed) and
    its risk report. ``max_suppression`` is the largest share of records that may be removed.
    """
    if k < 1:
        raise PrivacyError(f"k must be >= 1; got {k}")
    if l_diversity is not None and not sensitive:
        raise PrivacyError("l-diversity needs a sensitive attribute; pass --sensitive COLUMN")
    qis = list(quasi_identifiers)
    _check_columns(frame, qis + ([sensitive] if sensitive else []))
    if len(frame) < k:
        raise PrivacyError(f"the extract has {len(frame)} records, fewer than k = {k}; it cannot be released")
    ranges = [range(_hierarchy(c)[0]) for c in qis]
    best: tuple[float, int, dict[str, int], pd.Series] | None = None
    for node in itertools.product(*ranges):
        levels = dict(zip(qis, node, strict=True))
        candidate = generalize(frame, levels)
        sizes, diversity = _class_stats(candidate, qis, sensitive)
        risky = sizes < k
        if l_diversity is not None and diversity is not None:
            risky |= diversity < l_diversity
        if risky.mean() > max_suppression:
            continue
        loss = sum(level / (_hierarchy(c)[0] - 1) for c, level in levels.items())
        if best is None or (loss, int(risky.sum())) < (best[0], best[1]):
            best = (loss, int(risky.sum()), levels, risky)
    if best is None:
        raise PrivacyError(
            f"no generalisation reaches k = {k} with at most {max_suppression:.0%} of records suppressed; "
            "raise --max-suppression or use fewer quasi-identifiers"
        )
    _, suppressed, levels, risky = best
    released = generalize(frame, levels)[~risky.to_numpy()].reset_index(drop=True)
    report = risk_report(released, qis, sensitive, k)
    report.levels = levels
    report.suppressed_records = suppressed
    return released, report


def person_extract(db: HubDatabase, reference_year: int | None = None) -> pd.DataFrame:
    """One row per person: age, sex, region, zip and first recorded diagnosis (the sensitive value).

    Age is at ``reference_year`` (default: the year the hub's observation ends).
    """
    year = reference_year or db.scalar(
        "SELECT year(max(observation_period_end_date)) FROM observation_period"
    )
    year = int(year) if year else int(db.scalar("SELECT year(current_date)"))
    return db.df(
        f"""SELECT {year} - p.year_of_birth AS age,
                   CASE p.gender_concept_id WHEN 8507 THEN 'M' WHEN 8532 THEN 'F' ELSE 'U' END AS sex,
                   l.state AS region, l.zip AS zip,
                   coalesce(dx.diagnosis, 'none') AS diagnosis
            FROM person p LEFT JOIN location l ON l.location_id = p.location_id
            LEFT JOIN (SELECT x.person_id, arg_min(coalesce(c.concept_name, 'unmapped'), x.condition_start_date)
                              AS diagnosis
                       FROM condition_occurrence x LEFT JOIN concept c ON c.concept_id = x.condition_concept_id
                       GROUP BY 1) dx ON dx.person_id = p.person_id"""
    )
