"""Risk scores: one patient from a FHIR Bundle (a warm ``BundleScorer``), or a batch of the hub's persons.

Least privilege: no answer gives a researcher a person-level row. A researcher's batch is the hub's
risk distribution (released counts by fixed risk band, through the hub's release path, and the mean
risk); only a clinician scores persons of the hub, those they name, and date probing is bounded.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from healthmesh.api.auth import Principal, require_roles
from healthmesh.api.deps import HubState, get_state, set_rows
from healthmesh.api.json_route import JsonRoute
from healthmesh.cdm import HubDatabase
from healthmesh.risk import score_batch

__all__ = ["AsOfProbes", "BatchRequest", "router"]

router = APIRouter(tags=["risk"], route_class=JsonRoute)

ModelName = Annotated[str, Path(max_length=100, description="model name, as listed by GET /models")]


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


# -- batch scoring: a distribution for researchers, named patients for clinicians ------------------

MAX_NAMED_PERSONS = 20
# Distinct index dates one caller may ask about one person in one UTC day (each a month, see below).
MAX_AS_OF_PER_DAY = 3
MAX_PROBED_PAIRS = 500_000  # (caller, person) pairs with an as_of remembered today
# Risk bands of the researcher's distribution: fixed edges, so that no band edge is a person's risk.
RISK_BANDS = (0.0, 0.05, 0.10, 0.20, 0.30, 0.50, 1.0)
MEAN_MIN_PERSONS = 100


class BatchRequest(BaseModel):
    """Researchers: ``{}`` (the hub's risk distribution). Clinicians: the patients they name."""

    person_ids: list[Annotated[int, Field(ge=0, le=2**63 - 1)]] | None = Field(
        default=None,
        max_length=MAX_NAMED_PERSONS,
        description=f"clinicians: the patients to score (1 to {MAX_NAMED_PERSONS}); researchers: omit",
    )
    as_of: date | None = Field(
        default=None,
        description="clinicians: the index date, taken as the first day of its month and never after "
        "the patient's last observed day (default that day); at most "
        f"{MAX_AS_OF_PER_DAY} distinct months per patient per day",
    )


class AsOfProbes:
    """Which index dates each caller asked about each person today: the bound on date probing.

    Kept in the service process (one per hub service); a new UTC day starts a new count.
    """

    def __init__(self, limit: int = MAX_AS_OF_PER_DAY) -> None:
        self.limit = limit
        self._day: date | None = None
        self._seen: dict[tuple[str, int], set[date]] = {}
        self._lock = threading.Lock()

    def admit(self, caller: str, persons: list[int], as_of: date) -> bool:
        """Record ``as_of`` for each person; False (and nothing recorded) when one would pass the limit."""
        today = datetime.now(UTC).date()
        with self._lock:
            if self._day != today:
                self._day, self._seen = today, {}
            if len(self._seen) + len(persons) > MAX_PROBED_PAIRS:  # bounded memory: refuse, don't forget
                return False
            for person in persons:
                seen = self._seen.get((caller, person), set())
                if as_of not in seen and len(seen) >= self.limit:
                    return False
            for person in persons:
                self._seen.setdefault((caller, person), set()).add(as_of)
        return True


def _distribution(state: HubState, model: str, db: HubDatabase) -> tuple[dict[str, Any], int]:
    """The hub's risk distribution (persons per fixed risk band, every count released; the mean risk),
    and how many persons it was computed over (for the audit log)."""
    scores = score_batch(state.models[model], db)
    release = state.release
    risk = scores["risk"].to_numpy(dtype=float)
    persons = scores["person_id"].to_numpy()
    total = release.count(len(persons), release.person_key(persons))
    edges = np.asarray(RISK_BANDS)
    band_of = np.clip(np.searchsorted(edges, risk, side="right") - 1, 0, len(edges) - 2)
    bands = []
    for i in range(len(edges) - 1):
        members = persons[band_of == i]
        released = release.count(len(members), release.person_key(members))
        bands.append({"risk_from": float(edges[i]), "risk_to": float(edges[i + 1]), "persons": released,
                      "suppressed": released is None})  # fmt: skip
    # One person moves the mean of n by at most 1/n: released, to two decimals, only over many persons.
    mean = round(float(risk.mean()), 2) if len(persons) >= MEAN_MIN_PERSONS else None
    return {
        "model": model,
        "view": "distribution",
        "min_count": release.min_count,
        "persons": total,
        "mean_risk": mean,
        "bands": bands,
        "calibration": None,  # outcomes after each person's last observed day are not known yet
    }, len(persons)


def _named_patients(db: HubDatabase, person_ids: list[int]) -> dict[int, date | None]:
    """Each named, living person's last observed day (None: not known at this hub, or deceased)."""
    ids = ", ".join(str(int(p)) for p in person_ids)
    rows = db.rows(
        "SELECT p.person_id, max(op.observation_period_end_date), "
        "EXISTS (SELECT 1 FROM death d WHERE d.person_id = p.person_id) FROM person p "
        f"LEFT JOIN observation_period op ON op.person_id = p.person_id WHERE p.person_id IN ({ids}) "
        "GROUP BY p.person_id"
    )
    found: dict[int, date | None] = {int(p): None for p in person_ids}
    for person, last_day, deceased in rows:
        if not deceased and last_day is not None:
            found[int(person)] = (
                last_day if isinstance(last_day, date) else date.fromisoformat(str(last_day)[:10])
            )
    return found


def _scores(
    state: HubState, model: str, db: HubDatabase, persons: list[int], as_of: date | None
) -> list[dict[str, Any]]:
    if not persons:
        return []
    scores = score_batch(state.models[model], db, as_of=as_of, person_ids=persons)
    return [
        {"person_id": int(p), "index_date": str(d)[:10], "risk": round(float(r), 6)}
        for p, d, r in zip(scores["person_id"], scores["index_date"], scores["risk"], strict=True)
    ]


@router.post("/risk/{model}/batch")
def score_many(
    request: Request,
    model: ModelName,
    body: BatchRequest,
    principal: Annotated[Principal, Depends(require_roles("clinician", "researcher"))],
) -> dict[str, Any]:
    """Researchers: the hub's risk distribution (released counts by band). Clinicians: named patients.

    No researcher answer holds a person id, a date or one person's risk. A clinician names the
    patients (at most 20; the audit entry lists them); the index date is a month (its first day),
    never after the patient's last observed day, and a deceased or unknown patient is not scored.
    """
    state = get_state(request)
    _known(state, model)
    if body.person_ids is None:
        if "researcher" not in principal.roles:
            raise HTTPException(422, f"a clinician scores the patients they name: give person_ids (1 to "
                                     f"{MAX_NAMED_PERSONS})")  # fmt: skip
        if body.as_of is not None:
            raise HTTPException(422, "as_of is for clinicians scoring named patients; the distribution is "
                                     "as of each person's last observed day")  # fmt: skip
        with state.cursor() as db:
            answer, scored_persons = _distribution(state, model, db)
        set_rows(request, scored_persons)
        return answer
    if "clinician" not in principal.roles:
        raise HTTPException(403, "only a clinician scores named patients; researchers get the distribution "
                                 "(send {})")  # fmt: skip
    named = list(dict.fromkeys(body.person_ids))
    request.state.persons = named
    if not named:
        raise HTTPException(422, f"person_ids: name 1 to {MAX_NAMED_PERSONS} patients")
    month = body.as_of.replace(day=1) if body.as_of is not None else None
    probes: AsOfProbes = request.app.state.as_of_probes
    if month is not None and not probes.admit(principal.subject, named, month):
        raise HTTPException(429, f"at most {MAX_AS_OF_PER_DAY} distinct as_of months per patient per day; "
                                 "try again tomorrow")  # fmt: skip
    with state.cursor() as db:
        last_days = _named_patients(db, named)
        living = [p for p in named if last_days[p] is not None]
        # Past the last observed day there is nothing new to see: such a date is the default (that day).
        earlier = [p for p in living if month is not None and month < last_days[p]]  # type: ignore[operator]
        latest = [p for p in living if p not in set(earlier)]
        scored = _scores(state, model, db, earlier, month) + _scores(state, model, db, latest, None)
    set_rows(request, len(scored))
    by_person = {row["person_id"]: row for row in scored}
    return {
        "model": model,
        "view": "patients",
        "count": len(scored),
        "scores": [by_person[p] for p in named if p in by_person],
        "not_scored": [p for p in named if p not in by_person],  # unknown here, or deceased
    }
