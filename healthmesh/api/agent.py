"""A hub's agent in the live network: pulls studies from the coordinator and answers them itself.

``healthmesh hub serve --network URL`` attaches one to the hub service (``attach_agent``). It runs
on the service's event loop, in the process that owns the hub database: the API and the studies
read the same connection (a cursor each), so the hub answers its users and the network at once.

For each study the hub's policy (``healthmesh.policy``; ``[studies] run_at_once``) decides:
refuse (an operation it never answers: refused, with the policy's reason), run at once, or hold
for the admin (``POST /network/studies/{id}/approve`` or ``/refuse``, admin role; ``healthmesh hub
approve``). A study runs on a worker thread; its numbers pass the hub's own ``Release`` (the
same threshold and cell-key noise as the hub's API answers); the answer is written to the audit
log (the study id in the route, the researcher as subject, the study's purpose) before it is
posted, as every API answer is. Only the released result leaves the hub.

The agent long-polls ``GET /hub/studies`` with the hub's credential: a study reaches it the moment
it is submitted. When the coordinator cannot be reached it retries, with a growing pause (at most
``MAX_BACKOFF_S``), and asks again for every study still waiting, so nothing is lost to a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from healthmesh.api.audit import AuditEntry
from healthmesh.api.auth import Principal, require_roles
from healthmesh.api.deps import HubState
from healthmesh.api.json_route import JsonRoute
from healthmesh.errors import FederationError, HealthmeshError
from healthmesh.network.client import tls_context
from healthmesh.policy import HubPolicy, PolicyRefusal, load_policy
from healthmesh.privacy.release import DEFAULT_MAX_NOISE, Release

__all__ = ["AGENT_ROUTE", "CoordinatorAnswer", "HubAgent", "attach_agent", "router"]

log = logging.getLogger(__name__)

POLL_WAIT_S = 25.0  # how long one long-poll is held at the coordinator
MAX_BACKOFF_S = 2.0  # a hub asks a coordinator that is down again at least this often
AGENT_ROUTE = "/network/studies/{study_id}"  # the audit route of a study's answer (with its id)


class CoordinatorAnswer(FederationError):
    """The coordinator said no (its status and one-line reason), or could not be reached (status 0)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class HubAgent:
    """The hub's side of the network: its credential, its policy file, and the studies in hand."""

    def __init__(
        self,
        state: HubState,
        network_url: str,
        credential: str,
        *,
        policy_path: Path | None = None,
        ca: Path | None = None,
    ) -> None:
        self.state = state
        self.hub = state.config.hub
        self.network_url = network_url.rstrip("/")
        self.policy_path = policy_path
        self._headers = {"Authorization": f"Bearer {credential}"}
        self._ca = ca
        self._http: httpx.AsyncClient | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}  # study id -> its task (one at a time each)

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.policy()  # a bad policy file stops the service at start, with its reason
        self._http = httpx.AsyncClient(
            base_url=self.network_url,
            headers=self._headers,
            verify=tls_context(self._ca),
            timeout=httpx.Timeout(10.0, read=POLL_WAIT_S + 15.0),
        )
        self._loop_task = asyncio.create_task(self._pull_forever(), name=f"hub-agent-{self.hub}")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def policy(self) -> HubPolicy:
        """The hub policy, read again for each study (an admin's edit applies to the next one)."""
        return load_policy(self.policy_path)

    # -- talking to the coordinator --------------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self._http is not None, "start() the agent first"
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise CoordinatorAnswer(
                0, f"the coordinator at {self.network_url} cannot be reached ({error})"
            ) from None
        if response.is_success:
            return response.json()
        try:
            reason = str(response.json().get("detail", response.text))
        except ValueError:
            reason = response.text
        raise CoordinatorAnswer(
            response.status_code, f"the coordinator answered {response.status_code}: {reason}"
        )

    async def _state(self, study_id: str, state: str, note: str | None = None) -> None:
        await self._call("POST", f"/hub/studies/{study_id}/state", json={"state": state, "note": note})

    async def waiting(self) -> list[dict[str, Any]]:
        """Every study waiting at this hub (for its admin)."""
        return await self._call("GET", "/hub/waiting")  # type: ignore[no-any-return]

    async def _pull_forever(self) -> None:
        again, pause = True, 0.2
        while True:
            try:
                studies = await self._call(
                    "GET", "/hub/studies", params={"wait": POLL_WAIT_S, "again": again}
                )
                again, pause = False, 0.2
            except CoordinatorAnswer as error:
                log.warning("hub %s: %s; retrying in %.1f s", self.hub, error, pause)
                await asyncio.sleep(pause)
                again, pause = True, min(MAX_BACKOFF_S, pause * 2)
                continue
            except Exception:  # an answer it cannot read: the hub stays up and asks again
                log.exception("hub %s: the coordinator's answer could not be read", self.hub)
                await asyncio.sleep(pause)
                again, pause = True, min(MAX_BACKOFF_S, pause * 2)
                continue
            for study in studies:
                self._spawn(study["study_id"], partial(self.consider, study))

    def _spawn(self, study_id: str, work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run ``work`` for a study unless one is in hand already (a study is delivered again after an outage)."""
        if study_id in self._running and not self._running[study_id].done():
            return False
        task = asyncio.create_task(work(), name=f"study-{study_id}")
        self._running[study_id] = task
        task.add_done_callback(
            lambda _: self._running.pop(study_id, None) if self._running.get(study_id) is task else None
        )
        return True

    # -- deciding and answering ------------------------------------------------------------------

    async def consider(self, study: dict[str, Any]) -> None:
        """What the policy says of a study just delivered: refuse, hold for the admin, or run.

        A study this hub had approved or started before it stopped (delivered again, with its state)
        is run again: every kind is a read of the hub's data, so running it twice changes nothing.
        """
        study_id = study["study_id"]
        if study.get("state") in ("approved", "running"):
            if study["state"] == "approved":
                await self._report(study_id, "running")
            await self.execute(study)
            return
        try:
            policy = self.policy()
            decision = policy.study_decision(study["kind"])
            if study["kind"] == "count":  # counts by sex and age band need 'characterize' too
                policy.check_operation("query.count", study["spec"])
        except PolicyRefusal as refusal:
            await self._audit(study, 403, None)
            await self._report(study_id, "refused", str(refusal))
            return
        except HealthmeshError as error:  # the policy file broke after start: hold, the admin is told
            log.warning("hub %s: study %s held: %s", self.hub, study_id, error)
            decision = "hold"
        if decision == "hold":
            if not study.get("note"):
                await self._report(study_id, "waiting", f"held for the admin of hub {self.hub} (hub policy)")
            return
        await self._report(study_id, "running")
        await self.execute(study)

    async def _report(self, study_id: str, state: str, note: str | None = None) -> None:
        try:
            await self._state(study_id, state, note)
        except CoordinatorAnswer as error:
            log.warning("hub %s: study %s: %s", self.hub, study_id, error)

    async def execute(self, study: dict[str, Any]) -> None:
        """Compute the study here, audit the answer, and post it (or the reason it failed)."""
        study_id = study["study_id"]
        try:
            result, rows = await asyncio.to_thread(self.compute, study["kind"], study["spec"], study_id)
        except HealthmeshError as error:
            await self._audit(study, 422, None)
            await self._report(study_id, "failed", str(error).splitlines()[0][:400])
            return
        except Exception:  # the reason may quote data: only the type leaves the hub
            log.exception("hub %s: study %s failed", self.hub, study_id)
            await self._audit(study, 500, None)
            await self._report(
                study_id, "failed", f"hub {self.hub} could not compute the study (see its log)"
            )
            return
        await self._audit(study, 200, rows)  # no audit row, no answer
        try:
            await self._call("POST", f"/hub/studies/{study_id}/result", json={"result": result})
        except CoordinatorAnswer as error:
            log.warning("hub %s: study %s: result not taken: %s", self.hub, study_id, error)

    def release(self) -> Release:
        """The hub's release path, at the stricter of its service's and its policy's minimum cell."""
        min_cell = max(self.state.release.min_count, self.policy().min_cell)
        if min_cell == self.state.release.min_count:
            return self.state.release
        return Release(self.state.release.key, min_cell, min(DEFAULT_MAX_NOISE, min_cell - 1))

    def compute(self, kind: str, spec: dict[str, Any], study_id: str) -> tuple[dict[str, Any], int]:
        """A study's released answer and the number of persons it touched (on a worker thread)."""
        from healthmesh.privacy import assert_release_safe

        release = self.release()
        result: dict[str, Any]
        if kind == "count":
            from healthmesh.federation.cdm_tasks import concept_counts
            from healthmesh.federation.guard import SUPPRESSED

            with self.state.cursor() as db:
                counts, rows = concept_counts(db, spec, release)
            shown = {k: (None if v == SUPPRESSED else int(v)) for k, v in counts.items()}
            persons = shown.pop("persons")
            result = {"persons": persons, "cells": shown}
        elif kind == "cohort-attrition":
            from healthmesh.cohorts import build_cohort, load_cohort
            from healthmesh.cohorts.compiler import release_attrition

            definition = load_cohort(spec["cohort"] if "cohort" in spec else str(spec["builtin"]))
            prefix = "hm_net_" + "".join(ch if ch.isalnum() else "_" for ch in study_id)
            with self.state.cursor() as db:
                built = build_cohort(db, definition, prefix=prefix, cell_key=release.person_key)
            attrition = release_attrition(built.attrition, release)
            rows = int(built.attrition[-1]["persons"]) if built.attrition else 0  # type: ignore[call-overload]
            result = {
                "cohort": built.name,
                "attrition": attrition,
                "persons": attrition[-1]["persons"] if attrition else None,
            }
        elif kind == "characterization":
            from healthmesh.characterize import characterize

            def run() -> dict[str, Any]:
                with self.state.cursor() as db:
                    return characterize(db, release=release, hub=self.hub, charts=False)

            # The same document the hub's GET /characterization serves (and caches) when the release matches.
            result = self.state.cached("characterization", run) if release is self.state.release else run()
            with self.state.cursor() as db:
                rows = int(db.scalar("SELECT count(*) FROM person"))
        else:
            raise PolicyRefusal(f"this hub does not answer {kind!r} studies")
        assert_release_safe(result, release.min_count)
        return {"hub": self.hub, "min_count": release.min_count, **result}, rows

    async def _audit(self, study: dict[str, Any], status: int, rows: int | None) -> None:
        await self.state.audit.write(
            AuditEntry(
                subject=f"network:{study['researcher']}",
                role="network-study",
                method="STUDY",
                route=AGENT_ROUTE.replace("{study_id}", study["study_id"]) + f" ({study['kind']})",
                purpose=study.get("purpose"),
                rows_touched=rows,
                status=status,
                client=self.network_url,
            )  # fmt: skip
        )

    # -- the admin's decisions -------------------------------------------------------------------

    async def approve(self, study_id: str) -> dict[str, Any]:
        """The admin says yes: the study runs now (the answer is posted when it is ready)."""
        study = await self._call("GET", f"/hub/studies/{study_id}")
        self.policy().study_decision(study["kind"])  # an operation the policy forbids stays refused
        await self._state(study_id, "approved", None)

        async def run() -> None:
            await self._report(study_id, "running")
            await self.execute(study)

        self._spawn(study_id, run)
        return {"study_id": study_id, "hub": self.hub, "state": "approved"}

    async def refuse(self, study_id: str, reason: str) -> dict[str, Any]:
        study = await self._call("GET", f"/hub/studies/{study_id}")
        await self._audit(study, 403, None)
        await self._state(study_id, "refused", f"refused by the admin of hub {self.hub}: {reason}")
        return {"study_id": study_id, "hub": self.hub, "state": "refused"}


# -- the hub API's routes for its admin --------------------------------------------------------

router = APIRouter(tags=["network"], route_class=JsonRoute)
Admin = Annotated[Principal, Depends(require_roles("admin"))]


class Refusal(BaseModel):
    reason: str = Field(min_length=3, max_length=300, description="why: the researcher reads it")


def _agent(request: Request) -> HubAgent:
    agent = getattr(request.app.state, "network_agent", None)
    if agent is None:
        raise HTTPException(404, "this hub is not in a network; start it with `hub serve --network URL`")
    return agent  # type: ignore[no-any-return]


async def _answer(call: Coroutine[Any, Any, Any]) -> Any:
    try:
        return await call
    except CoordinatorAnswer as error:
        raise HTTPException(error.status if 400 <= error.status < 500 else 502, str(error)) from None
    except PolicyRefusal as refusal:
        raise HTTPException(403, str(refusal)) from None


@router.get("/network/studies")
async def waiting_studies(request: Request, principal: Admin) -> list[dict[str, Any]]:
    """Studies waiting at this hub: who asks, for what purpose, what (for the admin to decide)."""
    return await _answer(_agent(request).waiting())  # type: ignore[no-any-return]


@router.post("/network/studies/{study_id}/approve")
async def approve_study(study_id: str, request: Request, principal: Admin) -> dict[str, Any]:
    """Run a held study now; its released answer goes to the coordinator when ready."""
    return await _answer(_agent(request).approve(study_id))  # type: ignore[no-any-return]


@router.post("/network/studies/{study_id}/refuse")
async def refuse_study(study_id: str, body: Refusal, request: Request, principal: Admin) -> dict[str, Any]:
    """Refuse a waiting study, with the reason the researcher will read."""
    return await _answer(_agent(request).refuse(study_id, body.reason))  # type: ignore[no-any-return]


def attach_agent(app: FastAPI, agent: HubAgent) -> None:
    """Run ``agent`` for as long as the hub service runs, and add the admin's routes."""
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with original(application) as value:
            await agent.start()
            try:
                yield value
            finally:
                await agent.stop()  # before the service closes the database under it

    app.router.lifespan_context = lifespan
    app.state.network_agent = agent
    app.include_router(router)
