"""Risk scores: one patient from a FHIR Bundle (a warm ``BundleScorer``), or a batch of the hub's persons."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from healthmesh.api.auth import Principal, require_roles
from healthmesh.api.deps import HubState, get_state, set_rows
from healthmesh.api.json_route import JsonRoute
from healthmesh.risk import score_batch

__all__ = ["BatchRequest", "router"]

router = APIRouter(tags=["risk"], route_class=JsonRoute)

ModelName = Annotated[str, Path(max_length=100, description="model name, as listed by GET /models")]
MAX_BATCH_IDS = 100_000


class BatchRequest(BaseModel):
    """Which persons to score: ``person_ids``, or every person of the hub when omitted."""

    person_ids: list[Annotated[int, Field(ge=0, le=2**63 - 1)]] | None = Field(
        default=None, max_length=MAX_BATCH_IDS
    )
    as_of: date | None = Field(
        default=None, description="index date; default each person's last observed day"
    )


def _known(state: HubState, name: str) -> None:
    if name not in state.models:
        known = ", ".join(sorted(state.models)) or "none"
        raise HTTPException(404, f"no model {name!r} at hub {state.config.hub}; models here: {known}")


@router.get("/models")
def list_models(
    request: Request,
    principal: Annotated[Principal, Depends(require_roles("admin", "clinician", "researcher"))],
) -> dict[str, Any]:
    """The models this hub scores with (name, task, model id)."""
    state = get_state(request)
    return {
        "models": [
            {
                "name": name,
                "task": m.meta.get("task", {}).get("name"),
                "model_id": m.meta.get("model_id"),
                "features": len(m.feature_names),
            }  # fmt: skip
            for name, m in sorted(state.models.items())
        ]
    }


_BUNDLE_BODY = {
    "requestBody": {
        "required": True,
        "description": "one patient's FHIR R4 Bundle",
        "content": {"application/json": {"schema": {"type": "object", "title": "Bundle"}}},
    }
}


@router.post("/risk/{model}/score", openapi_extra=_BUNDLE_BODY)
async def score_one(
    request: Request,
    model: ModelName,
    principal: Annotated[Principal, Depends(require_roles("admin", "clinician", "researcher"))],
    as_of: Annotated[
        date | None, Query(description="index date; default the patient's last observed day")
    ] = None,
    top: Annotated[int, Query(ge=1, le=50)] = 10,
) -> Response:
    """Risk of one patient and the features that contributed most to it (log-odds)."""
    state = get_state(request)
    _known(state, model)
    body = await request.body()
    set_rows(request, 1)
    # A cleanly loading Bundle is answered in memory, in about a millisecond of CPU, by a scoring
    # worker process when the service has them. The body travels as bytes: it is parsed once, there.
    answer = await state.score_in_memory(model, body, as_of, top)
    if answer is not None:
        return Response(answer, media_type="application/json")
    # Any other Bundle: the database mapping, on a worker thread; it gives the answer or the reason.
    bundle = await _json_object(request)

    def run() -> dict[str, Any]:
        with state.scorer(model) as scorer:
            return scorer.score(bundle, as_of, top)

    return JSONResponse({"model": model, **(await run_in_threadpool(run))})


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        document = await request.json()  # the hub's one JSON reading (JsonRoute), on the cached body
    except ValueError as error:
        raise HTTPException(422, f"the body is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise HTTPException(422, "the body must be a JSON object: one patient's FHIR R4 Bundle")
    return document


@router.post("/risk/{model}/batch")
def score_many(
    request: Request,
    model: ModelName,
    body: BatchRequest,
    principal: Annotated[Principal, Depends(require_roles("clinician", "researcher"))],
) -> dict[str, Any]:
    """Risk of the given persons of this hub (or all of them) as of a date."""
    state = get_state(request)
    _known(state, model)
    with state.cursor() as db:
        scores = score_batch(state.models[model], db, as_of=body.as_of, person_ids=body.person_ids)
    set_rows(request, len(scores))
    return {
        "model": model,
        "count": len(scores),
        "scores": [
            {"person_id": int(p), "index_date": str(d)[:10], "risk": round(float(r), 6)}
            for p, d, r in zip(scores["person_id"], scores["index_date"], scores["risk"], strict=True)
        ],
    }
