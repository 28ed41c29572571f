"""``POST /fhir/Bundle``: load one FHIR Bundle into the hub's CDM, all of it or nothing.

The answer is a FHIR OperationOutcome. A Bundle with any rejected record is rolled back by
``ingest_bundle`` and answered 422 with one issue per rejection.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse

from healthmesh.api.auth import Principal, require_roles
from healthmesh.api.deps import get_state, set_rows
from healthmesh.api.json_route import JsonRoute
from healthmesh.cdm.attach import refuse_cdm_writes
from healthmesh.errors import IngestError
from healthmesh.ingest import IngestReport, ingest_bundle

__all__ = ["operation_outcome", "router"]

router = APIRouter(tags=["ingest"], route_class=JsonRoute)

FHIR_JSON = "application/fhir+json"
MAX_ISSUES = 50


def operation_outcome(severity: str, code: str, messages: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": m} for m in messages[:MAX_ISSUES]],
    }


def _rejection_line(item: dict[str, Any]) -> str:
    where = f"entry {item['entry']}" if item.get("entry") is not None else f"record {item.get('record', '?')}"
    kind = item.get("resource_type") or "resource"
    rid = f"/{item['id']}" if item.get("id") else ""
    return f"{where} ({kind}{rid}): {item.get('reason')}"


def _redacted(report: IngestReport) -> str:
    """How many identifier-looking values were not stored, by detector (never the values)."""
    if not report.redacted:
        return ""
    kinds = ", ".join(f"{kind} {count}" for kind, count in report.redacted_by_kind().items())
    return f"; {report.redacted} identifier-looking values not stored ({kinds})"


def _answer(report: IngestReport) -> JSONResponse:
    if report.committed:
        counts = ", ".join(f"{t}: {r['loaded']}" for t, r in sorted(report.by_type.items()) if r["loaded"])
        outcome = operation_outcome(
            "information", "informational",
            [f"stored {report.loaded} of {report.records} resources ({counts or 'none'}); "
             f"{report.skipped_count} skipped as not mapped to the CDM{_redacted(report)}"],
        )  # fmt: skip
        return JSONResponse(outcome, status_code=200, media_type=FHIR_JSON)
    lines = [_rejection_line(r) for r in report.rejections] or ["the Bundle was rejected"]
    lines.insert(0, f"nothing stored: {report.rejected} of {report.records} records rejected")
    return JSONResponse(operation_outcome("error", "invalid", lines), status_code=422, media_type=FHIR_JSON)


@router.post(
    "/fhir/Bundle",
    responses={
        200: {"description": "OperationOutcome: stored"},
        422: {"description": "OperationOutcome: rejected"},
    },
)
def post_bundle(
    request: Request,
    bundle: Annotated[
        dict[str, Any], Body(description="A FHIR R4 Bundle (transaction, batch or collection)")
    ],
    principal: Annotated[Principal, Depends(require_roles("admin"))],
) -> JSONResponse:
    """Map a FHIR Bundle into the CDM (the ingest mapping); a Bundle with a bad record stores nothing."""
    if bundle.get("resourceType") != "Bundle":
        set_rows(request, 0)
        reason = f"expected resourceType 'Bundle'; got {str(bundle.get('resourceType'))[:60]!r}"
        return JSONResponse(
            operation_outcome("error", "invalid", [reason]), status_code=422, media_type=FHIR_JSON
        )
    state = get_state(request)
    refuse_cdm_writes(state.db, "POST /fhir/Bundle", IngestError)  # an attached CDM is read-only
    text = json.dumps(bundle)
    with state.ingest_database() as db:
        report = ingest_bundle(db, text, state.config.hub, state.keys.pseudonym)
    if report.committed and report.loaded:
        state.data_changed()
    set_rows(request, report.loaded if report.committed else 0)
    return _answer(report)
