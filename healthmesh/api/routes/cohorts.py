"""``POST /cohorts/count``: build a cohort definition at the hub and release its attrition.

Each step's person count passes the hub's ``Release`` with the key of that step's person set: the
same persons get the same noise whatever definition reached them, so repeating, rephrasing or
differencing definitions (a step and a complement, one extra rule) leaves the noise of both cells
in every difference (``healthmesh.cohorts.compiler.release_attrition``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from healthmesh.api.auth import Principal, require_roles
from healthmesh.api.deps import get_state, set_rows
from healthmesh.api.json_route import JsonRoute
from healthmesh.cohorts import build_cohort, builtin_cohorts, load_cohort
from healthmesh.cohorts.compiler import release_attrition
from healthmesh.errors import CohortError
from healthmesh.privacy import assert_release_safe

__all__ = ["CohortCountRequest", "release_attrition", "router"]

router = APIRouter(tags=["cohorts"], route_class=JsonRoute)

Researchers = Annotated[Principal, Depends(require_roles("admin", "researcher", "peer-hub"))]


class CohortCountRequest(BaseModel):
    """A cohort definition (JSON, as ``healthmesh cohort count`` reads it) or a built-in's name."""

    definition: dict[str, Any] | None = Field(default=None, description="cohort definition JSON")
    builtin: str | None = Field(default=None, max_length=100, description="name of a built-in definition")
    purpose: str | None = Field(default=None, max_length=200, description="why (written to the audit log)")


@router.get("/cohorts")
def list_cohorts(principal: Researchers) -> dict[str, list[str]]:
    """Names of the built-in cohort definitions."""
    return {"builtin": sorted(builtin_cohorts())}


@router.post("/cohorts/count")
def count_cohort(request: Request, body: CohortCountRequest, principal: Researchers) -> dict[str, Any]:
    """Persons after each step of the definition (entry, observation, each inclusion rule), released."""
    if (body.definition is None) == (body.builtin is None):
        raise CohortError("give exactly one of 'definition' (cohort JSON) or 'builtin' (a built-in's name)")
    if body.builtin is not None and body.builtin not in builtin_cohorts():
        raise CohortError(
            f"no built-in cohort {body.builtin!r}; choose among {', '.join(sorted(builtin_cohorts()))}"
        )
    if body.purpose:
        request.state.purpose = body.purpose
    definition = load_cohort(body.definition if body.definition is not None else body.builtin)  # type: ignore[arg-type]
    state = get_state(request)
    with state.cursor() as db:
        result = build_cohort(db, definition, prefix="hm_api_cohort", cell_key=state.release.person_key)
    set_rows(request, result.persons)
    min_count = state.config.min_count
    attrition = release_attrition(result.attrition, state.release)
    document = {
        "hub": state.config.hub,
        "cohort": result.name,
        "min_count": min_count,
        "persons": attrition[-1]["persons"] if attrition else 0,  # the last step, as released
        "attrition": attrition,
    }
    assert_release_safe(document, min_count)
    return document
