"""One patient's covariates in memory, from ``PatientRecords``: the feature SQL's twin for a scoring request.

``features.feature_sql`` is the reference (the batch, training and validation all use it); this
module computes the same named covariates for the one patient of a Bundle without a database
round trip, clause by clause in the order of that SQL. Tests hold the two equal over generated
populations, name for name and value for value.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta
from typing import TYPE_CHECKING

from healthmesh.risk.features import _DOMAIN_COLUMNS
from healthmesh.risk.tasks import FeatureSettings

if TYPE_CHECKING:  # the risk domain reads the ingest domain's records; it needs no import of it to run
    from healthmesh.ingest.one_patient import PatientRecords

__all__ = ["patient_features"]

# Feature domain -> the CDM table it reads.
_DOMAIN_TABLE = {domain: columns[0] for domain, columns in _DOMAIN_COLUMNS.items()}


def patient_features(
    records: PatientRecords,
    settings: FeatureSettings,
    index_date: date,
    value_keys: dict[int, list[str]],
) -> dict[str, float]:
    """``name -> value`` of every covariate of ``records`` on ``index_date`` (``value_keys``: concept -> keys)."""
    years = index_date.year - records.year_of_birth
    out: dict[str, float] = {"age": float(years), f"gender:{records.gender_concept_id}": 1.0}
    if settings.age_group_years > 0:
        width = int(settings.age_group_years)
        low = math.floor(years / width) * width
        out[f"age_group:{low}-{low + width - 1}"] = 1.0
    windows = sorted({int(w) for w in settings.windows_days if w > 0})
    for domain in settings.domains:
        for concept, day, value_concept, _ in records.events.get(_DOMAIN_TABLE[domain], ()):
            if concept == 0 or day > index_date:
                continue
            label = f"{domain}:{concept}" + (f"={value_concept or 0}" if domain == "observation" else "")
            for days in windows:
                if day >= index_date - timedelta(days=days):
                    out[f"{label}:{days}d"] = 1.0
            if settings.history and domain == "condition":
                out[f"{label}:any"] = 1.0
    if settings.latest_values:
        # Latest value per key; ties on one day go to the larger value (arg_max over (date, value)).
        since = index_date - timedelta(days=int(settings.latest_lookback_days))
        latest: dict[str, tuple[date, float]] = {}
        for concept, day, _, value in records.events.get("measurement", ()):
            if value is None or not since <= day <= index_date:
                continue
            for key in value_keys.get(concept, ()):
                if key not in latest or (day, value) > latest[key]:
                    latest[key] = (day, value)
        out.update({f"value:{key}": value for key, (_, value) in latest.items()})
    if settings.visit_count_days > 0:
        days = int(settings.visit_count_days)
        since = index_date - timedelta(days=days)
        visits = Counter(concept for concept, start, _ in records.visits if since <= start <= index_date)
        out.update({f"visits:{concept}:{days}d": float(count) for concept, count in visits.items()})
    return out
