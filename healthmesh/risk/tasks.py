"""Prediction tasks as data: target cohort, outcome cohort, time at risk, features and candidate models.

A task is a JSON file (see ``healthmesh/risk/tasks/*.json``); a user adds one by writing a file and
passing its path (or dropping it beside the built-ins), no code needed. Cohorts are named built-in
definitions, paths relative to the task file, or inline definitions.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from healthmesh.cohorts import CohortDefinition, load_cohort
from healthmesh.errors import ModelError
from healthmesh.risk.names import MODEL_NAMES

__all__ = ["FeatureSettings", "Task", "TimeAtRisk", "builtin_tasks", "load_task"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TimeAtRisk(_Strict):
    """Days after the index date in which an outcome counts (both ends included)."""

    start_days: int = 1
    end_days: int = Field(gt=0)


class ValueKey(_Strict):
    """A lab or vital whose latest value becomes a feature, named by vocabulary and code."""

    vocabulary_id: str
    concept_code: str


class FeatureSettings(_Strict):
    """Which covariates to build (the PatientLevelPrediction-style default set)."""

    windows_days: list[int] = Field(default_factory=lambda: [365, 30])
    history: bool = True
    domains: list[str] = Field(
        default_factory=lambda: ["condition", "drug", "procedure", "measurement", "observation"]
    )
    latest_values: list[ValueKey] = Field(default_factory=list)
    latest_lookback_days: int = 1095
    visit_count_days: int = 365
    age_group_years: int = 5
    min_persons: int = 5

    @field_validator("domains")
    @classmethod
    def _known_domains(cls, value: list[str]) -> list[str]:
        known = {"condition", "drug", "procedure", "measurement", "observation"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown feature domains {unknown}; choose among {sorted(known)}")
        return value


class Task(_Strict):
    """A prediction task."""

    name: str
    description: str = ""
    target_cohort: str | dict[str, Any]
    outcome_cohort: str | dict[str, Any]
    time_at_risk: TimeAtRisk
    min_time_at_risk_days: int = 0
    remove_prior_outcomes: bool = True
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    models: list[str] = Field(default_factory=lambda: list(MODEL_NAMES))
    test_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    base_dir: str | None = None

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in MODEL_NAMES]
        if unknown or not value:
            raise ValueError(f"models must be among {list(MODEL_NAMES)}; got {value}")
        return value

    def _cohort(self, ref: str | dict[str, Any]) -> CohortDefinition:
        if isinstance(ref, dict):
            return load_cohort(ref)
        if self.base_dir and (Path(self.base_dir) / ref).is_file():
            return load_cohort(Path(self.base_dir) / ref)
        return load_cohort(ref)

    def target(self) -> CohortDefinition:
        return self._cohort(self.target_cohort)

    def outcome(self) -> CohortDefinition:
        return self._cohort(self.outcome_cohort)

    def document(self) -> dict[str, Any]:
        """The task with its cohorts inlined: what a model carries so another hub can rebuild it."""
        doc = self.model_dump(exclude={"base_dir"})
        doc["target_cohort"] = self.target().model_dump()
        doc["outcome_cohort"] = self.outcome().model_dump()
        return doc


def builtin_tasks() -> dict[str, Path]:
    """The tasks shipped with healthmesh, by name."""
    folder = Path(str(resources.files("healthmesh.risk") / "tasks"))
    return {path.stem: path for path in sorted(folder.glob("*.json"))}


def load_task(source: str | Path | dict[str, Any]) -> Task:
    """A task from a dict, a JSON file, or a built-in name (``t2dm-3y``, ``mi-stroke-5y``, ``ckd-3y``)."""
    where = "task"
    if isinstance(source, dict):
        document = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            builtin = builtin_tasks()
            if str(source) not in builtin:
                raise ModelError(
                    f"task {str(source)!r} not found; give a task JSON file or one of: {', '.join(builtin)}"
                )
            path = builtin[str(source)]
        where = str(path)
        try:
            document = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ModelError(f"{where} is not valid JSON: {error}") from error
        document.setdefault("base_dir", str(path.parent))
    try:
        task = Task.model_validate(document)
        task.target()
        task.outcome()
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "task"
        raise ModelError(f"{where}: {location}: {first['msg']}") from None
    return task
