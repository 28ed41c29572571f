"""What a researcher may ask the network, and how the hubs' released answers add up.

A study request is checked here, at the coordinator, before any hub sees it (a bad request is a
one-line 422, not a failure at three hubs). Each hub answers with numbers its own release path
already released; the coordinator only adds them. A count a hub withheld (``None``) makes the
network figure a lower bound, which the combined result says (``complete: false``) with the hubs
that withheld it or did not answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from healthmesh.errors import CohortError, FederationError

__all__ = ["LIVE_KINDS", "StudyRequest", "combine_results"]

# Kinds the live network runs today; train and validate go over Flower (`healthmesh federate`).
LIVE_KINDS = ("count", "characterization", "cohort-attrition")


class StudyRequest(BaseModel):
    """A study as a researcher submits it (``POST /studies``, ``healthmesh study submit``)."""

    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(min_length=3, max_length=200, description="why: shown to every hub's admin")
    kind: Literal["count", "characterization", "cohort-attrition", "train", "validate"]
    hubs: list[str] | None = Field(default=None, max_length=100, description="default: every hub")
    concept_ids: list[int] | None = Field(default=None, max_length=1000, description="count: the concept set")
    include_descendants: bool = True
    characterize: bool = Field(default=True, description="count: also by sex and age band")
    cohort: dict[str, Any] | None = Field(default=None, description="cohort-attrition: a definition (JSON)")
    builtin: str | None = Field(
        default=None, max_length=100, description="cohort-attrition: a built-in's name"
    )
    task: str | None = Field(default=None, max_length=100, description="train/validate: the risk task")
    strategy: str | None = Field(default=None, max_length=40)
    rounds: int | None = Field(default=None, ge=1, le=100)
    deadline_s: float | None = Field(
        default=None,
        gt=0,
        le=30 * 24 * 3600,
        description="after this many seconds the study finishes with the hubs that answered; the others fail",
    )

    @model_validator(mode="after")
    def _fits_kind(self) -> StudyRequest:
        if self.kind not in LIVE_KINDS:
            raise ValueError(
                f"{self.kind} studies do not run on the live network yet; run them with "
                "`healthmesh federate` (see docs/readme/network.md)"
            )
        if self.kind == "count" and not self.concept_ids:
            raise ValueError("a count study needs concept_ids (a non-empty list of concept ids)")
        if self.kind == "cohort-attrition" and (self.cohort is None) == (self.builtin is None):
            raise ValueError("a cohort-attrition study needs exactly one of cohort (JSON) or builtin")
        return self

    def spec(self) -> dict[str, Any]:
        """What the hubs get: the fields of this kind only."""
        if self.kind == "count":
            return {
                "concept_ids": sorted({int(c) for c in self.concept_ids or []}),
                "include_descendants": self.include_descendants,
                "characterize": self.characterize,
            }
        if self.kind == "cohort-attrition":
            return {"cohort": self.cohort} if self.cohort is not None else {"builtin": self.builtin}
        return {}

    def check_cohort(self) -> None:
        """A cohort definition every hub can compile (CohortError with the reason otherwise)."""
        if self.kind != "cohort-attrition":
            return
        from healthmesh.cohorts import builtin_cohorts, load_cohort

        if self.builtin is not None and self.builtin not in builtin_cohorts():
            raise CohortError(
                f"no built-in cohort {self.builtin!r}; choose among {', '.join(sorted(builtin_cohorts()))}"
            )
        load_cohort(self.cohort if self.cohort is not None else self.builtin)  # type: ignore[arg-type]


def _sum(values: Mapping[str, int | None]) -> dict[str, Any]:
    withheld = sorted(hub for hub, v in values.items() if v is None)
    return {"count": sum(v for v in values.values() if v is not None), "withheld_at": withheld}


def combine_results(kind: str, hubs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The network figure from the hubs' parts (``{hub: {"state", "result", ...}}``) of one study."""
    answered = {hub: part["result"] for hub, part in hubs.items() if part["state"] == "done"}
    missing = sorted(hub for hub in hubs if hub not in answered)
    out: dict[str, Any] = {"answered": sorted(answered), "missing": missing}
    if kind == "count":
        total = _sum({hub: r.get("persons") for hub, r in answered.items()})
        cells = sorted({cell for r in answered.values() for cell in r.get("cells", {})})
        out["persons"] = {**total, "complete": not missing and not total["withheld_at"]}
        out["cells"] = {
            cell: _sum({hub: r.get("cells", {}).get(cell) for hub, r in answered.items()}) for cell in cells
        }
    elif kind == "cohort-attrition":
        steps: list[str] = []
        for result in answered.values():
            for step in result.get("attrition", []):
                if step["step"] not in steps:
                    steps.append(step["step"])
        out["attrition"] = [
            {
                "step": step,
                **_sum(
                    {
                        hub: next((s["persons"] for s in r.get("attrition", []) if s["step"] == step), None)
                        for hub, r in answered.items()
                    }
                ),
            }
            for step in steps
        ]
    elif kind == "characterization":
        out["per_hub"] = "see each hub's result: characterizations are published per hub, not summed"
    else:
        raise FederationError(f"no way to combine {kind!r} results")
    return out
