"""``GET /audit``: the hub's audit log, newest first (admin only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from healthmesh.api.audit import read_audit
from healthmesh.api.auth import Principal, require_roles
from healthmesh.api.deps import get_state, set_rows
from healthmesh.api.json_route import JsonRoute

__all__ = ["router"]

router = APIRouter(tags=["audit"], route_class=JsonRoute)


@router.get("/audit")
def audit_log(
    request: Request,
    principal: Annotated[Principal, Depends(require_roles("admin"))],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    subject: Annotated[str | None, Query(max_length=200, description="entries of one client only")] = None,
    since_id: Annotated[int, Query(ge=0, le=2**62, description="entries after this entry_id")] = 0,
) -> dict[str, Any]:
    """Who did what, when, why, to how many rows, and how it ended."""
    state = get_state(request)
    with state.cursor() as db:
        entries = read_audit(db, limit, subject, since_id)
    set_rows(request, len(entries))
    return {"hub": state.config.hub, "entries": entries}
