"""Weekly influenza-like-illness (ILI) visits per region, read from a hub's OMOP CDM.

An ILI visit is a ``condition_occurrence`` with the local concept 2000000001 ('HM-ILI'); its region is
the ``location.state`` of the person; its week is the ISO week (Monday to Sunday), dated by its Monday.
Only the weekly count per region is read, an aggregate, never a patient row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from healthmesh.cdm import HubDatabase, connect
from healthmesh.errors import CDMError, ForecastError
from healthmesh.forecast.series import validate_series

__all__ = ["ILI_CONCEPT_ID", "read_hub_ili"]

ILI_CONCEPT_ID = 2000000001

_WEEKLY_ILI = f"""
    SELECT coalesce(l.state, 'unknown') AS unique_id,
           CAST(date_trunc('week', co.condition_start_date) AS DATE) AS ds,
           count(*) AS y
    FROM condition_occurrence co
    JOIN person p ON p.person_id = co.person_id
    LEFT JOIN location l ON l.location_id = p.location_id
    WHERE co.condition_concept_id = {ILI_CONCEPT_ID}
    GROUP BY 1, 2
"""


# The last week the hub has data for: weeks after the last ILI visit up to it are quiet weeks (0), not gaps.
_LAST_WEEK = "SELECT CAST(date_trunc('week', max(visit_start_date)) AS DATE) FROM visit_occurrence"


def read_hub_ili(hub: HubDatabase | str | Path) -> pd.DataFrame:
    """Weekly ILI visit counts per region (``unique_id`` = state code), weeks without a visit as 0."""
    if isinstance(hub, HubDatabase):
        counts = hub.df(_WEEKLY_ILI)
        last_week = hub.scalar(_LAST_WEEK)
        source = str(hub.path)
    else:
        source = str(hub)
        try:
            db = connect(hub, read_only=True)
        except CDMError:
            if not Path(hub).is_file():
                raise
            # DuckDB refuses a read-only handle while this process holds the file read-write
            # (a demo that just built the hub); a plain handle shares that instance. Only SELECTs follow.
            db = connect(hub)
        with db:
            counts = db.df(_WEEKLY_ILI)
            last_week = db.scalar(_LAST_WEEK)
    if counts.empty:
        raise ForecastError(
            f"hub {source} has no ILI visits (condition_concept_id {ILI_CONCEPT_ID}); ingest ILI data first"
        )
    counts["ds"] = pd.to_datetime(counts["ds"])
    # Every region gets every week of the hub's span, so a quiet week is a 0, not a gap.
    # The last week may be partial; the full weeks before it are complete.
    end = (
        counts["ds"].max()
        if last_week is None
        else max(counts["ds"].max(), pd.Timestamp(last_week) - pd.Timedelta(days=7))
    )
    weeks = pd.date_range(counts["ds"].min(), end, freq="7D")
    full = pd.MultiIndex.from_product(
        [sorted(counts["unique_id"].unique()), weeks], names=["unique_id", "ds"]
    )
    series = counts.set_index(["unique_id", "ds"])["y"].reindex(full, fill_value=0).reset_index()
    return validate_series(series, source)
