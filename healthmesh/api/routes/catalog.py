"""The hub's published aggregates: catalog entry, quality summary and characterization.

Each is computed on first request and cached until the next committed ingest; every number in
them went through the hub's ``Release`` (threshold and cell-key perturbation).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from healthmesh.api.auth import Principal, require_roles
from healthmesh.api.deps import HubState, get_state, set_rows
from healthmesh.api.json_route import JsonRoute
from healthmesh.characterize import build_catalog, characterize
from healthmesh.quality import QualityReport, run_quality

__all__ = ["router"]

router = APIRouter(tags=["catalog"], route_class=JsonRoute)

Aggregates = Annotated[Principal, Depends(require_roles("admin", "researcher", "peer-hub"))]


def _quality(state: HubState) -> QualityReport:
    def compute() -> QualityReport:
        with state.cursor() as db:
            return run_quality(db, release=state.release)

    return state.cached("quality", compute)


def _characterization(state: HubState) -> dict[str, Any]:
    def compute() -> dict[str, Any]:
        with state.cursor() as db:
            return characterize(db, release=state.release, hub=state.config.hub, charts=False)

    return state.cached("characterization", compute)


def _persons(state: HubState) -> int:
    with state.cursor() as db:
        return int(db.scalar("SELECT count(*) FROM person"))


@router.get("/catalog")
def catalog(
    request: Request,
    principal: Annotated[
        Principal, Depends(require_roles("admin", "researcher", "peer-hub", "public-health"))
    ],
) -> dict[str, Any]:
    """The hub's catalog entry (DCAT-style): period, domains, quality, highlights."""
    state = get_state(request)

    def compute() -> dict[str, Any]:
        with state.cursor() as db:
            return build_catalog(
                db, state.config.hub, release=state.release,
                quality=_quality(state), characterization=_characterization(state),
            )  # fmt: skip

    set_rows(request, _persons(state))
    return state.cached("catalog", compute)


@router.get("/quality")
def quality(
    request: Request,
    principal: Aggregates,
    failed_only: Annotated[bool, Query(description="list only the failed checks")] = True,
) -> dict[str, Any]:
    """The data-quality summary per category and the released result of each (failed) check."""
    state = get_state(request)
    report = _quality(state)
    checks = report.failed() if failed_only else report.results
    set_rows(request, _persons(state))
    return {
        "hub": state.config.hub,
        "created": report.created,
        "min_count": report.min_count,
        "summary": report.summary(),
        "checks": [{k: v for k, v in c.released(state.release).items() if k != "sql"} for c in checks],
    }


@router.get("/characterization")
def characterization(
    request: Request,
    principal: Aggregates,
    analysis_id: Annotated[int | None, Query(ge=0, description="one analysis only")] = None,
) -> dict[str, Any]:
    """Achilles-style analyses of the hub, small cells withheld."""
    state = get_state(request)
    document = _characterization(state)
    set_rows(request, _persons(state))
    if analysis_id is None:
        return document
    return {**document, "analyses": [a for a in document["analyses"] if a["analysis_id"] == analysis_id]}
