"""A hub's federated policy: which operations it answers, for which tasks, within which limits.

The hub admin owns the file (TOML); ``load_policy`` validates it and names the first problem in
one line. The ClientApp checks every message against it before any data is read (see
``healthmesh.federation.policing``); a refusal is a ``PolicyRefusal`` whose text is the reason.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from healthmesh.errors import ConfigError, FederationError

__all__ = [
    "DEFAULT_POLICY",
    "OPERATIONS",
    "STUDY_KINDS",
    "HubPolicy",
    "PolicyRefusal",
    "StudyRules",
    "TaskDefinition",
    "TrainingLimits",
    "load_policy",
]

Operation = Literal["count", "characterize", "summary", "train", "evaluate", "validate"]
OPERATIONS: tuple[str, ...] = ("count", "characterize", "summary", "train", "evaluate", "validate")
DEFAULT_POLICY = "default_policy.toml"

# Flower message type -> the operation a hub admin allows or not.
MESSAGE_OPERATIONS = {
    "query.count": "count",
    "query.summary": "summary",
    "train": "train",
    "evaluate": "evaluate",
    "evaluate.validate": "validate",
}


class PolicyRefusal(FederationError):
    """A message this hub's policy does not allow; the text is the one-line reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskDefinition(_Strict):
    """A training task the hub accepts; its own split and column types, never the coordinator's."""

    source: Literal["cdm", "table"]
    risk_task: str | None = None
    target: str | None = None
    seed: int = 42
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    categorical: tuple[str, ...] = ()
    features: tuple[str, ...] | None = None

    def matches(self, job: Mapping[str, Any]) -> bool:
        if str(job.get("source", "table")) != self.source:
            return False
        wanted = self.risk_task if self.source == "cdm" else self.target
        given = job.get("risk-task" if self.source == "cdm" else "target")
        return wanted in (None, "*") or str(given) == wanted

    def name(self) -> str:
        return f"{self.source}:{self.risk_task if self.source == 'cdm' else self.target}"


class TrainingLimits(_Strict):
    max_params_per_example: float = Field(0.33, gt=0.0, le=1.0)
    max_start_norm: float = Field(25.0, gt=0.0)
    max_start_abs: float = Field(15.0, gt=0.0)
    max_lr: float = Field(2.0, gt=0.0)
    max_local_steps: int = Field(50, ge=1)
    max_l2: float = Field(1.0, ge=0.0)
    max_proximal_mu: float = Field(10.0, ge=0.0)


STUDY_KINDS: tuple[str, ...] = ("count", "characterization", "cohort-attrition", "train", "validate")
# A study kind -> the operation of ``operations`` that allows it.
STUDY_OPERATIONS = {
    "count": "count",
    "characterization": "characterize",
    "cohort-attrition": "count",
    "train": "train",
    "validate": "validate",
}


class StudyRules(_Strict):
    """Studies of the live network: which kinds run as they arrive; the others wait for the admin."""

    run_at_once: tuple[str, ...] = ("count", "cohort-attrition")

    @field_validator("run_at_once")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in STUDY_KINDS]
        if unknown:
            raise ValueError(f"unknown study kind {unknown[0]!r}; use {', '.join(STUDY_KINDS)}")
        return value


class HubPolicy(_Strict):
    """The validated policy (see ``default_policy.toml`` for every field, with comments)."""

    operations: tuple[Operation, ...]
    min_cell: int = Field(5, ge=4, le=1000)
    training: TrainingLimits = Field(default_factory=lambda: TrainingLimits.model_validate({}))
    tasks: tuple[TaskDefinition, ...] = ()
    studies: StudyRules = Field(default_factory=lambda: StudyRules.model_validate({}))

    @field_validator("operations")
    @classmethod
    def _no_repeats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists an operation twice")
        return value

    # -- checks (each raises PolicyRefusal with the reason) -------------------------------------

    def check_operation(self, message_type: str, job: Mapping[str, Any]) -> None:
        operation = MESSAGE_OPERATIONS.get(message_type)
        if operation is None:
            raise PolicyRefusal(f"this hub does not answer {message_type!r} messages")
        if operation not in self.operations:
            raise PolicyRefusal(f"this hub's policy does not allow {operation!r}")
        if operation == "count" and job.get("characterize", True) and "characterize" not in self.operations:
            raise PolicyRefusal("this hub's policy does not allow 'characterize' (counts by sex and age)")

    def study_decision(self, kind: str) -> str:
        """``run`` (at once) or ``hold`` (for the admin); PolicyRefusal when the hub never answers it."""
        operation = STUDY_OPERATIONS.get(kind)
        if operation is None:
            raise PolicyRefusal(f"this hub does not answer {kind!r} studies")
        if operation not in self.operations:
            raise PolicyRefusal(f"this hub's policy does not allow {operation!r}")
        return "run" if kind in self.studies.run_at_once else "hold"

    def task_for(self, job: Mapping[str, Any]) -> TaskDefinition:
        """The hub's definition of the task ``job`` names; the job must use the hub's split."""
        for task in self.tasks:
            if task.matches(job):
                break
        else:
            named = job.get("risk-task") if job.get("source") == "cdm" else job.get("target")
            raise PolicyRefusal(
                f"this hub accepts no training task {job.get('source', 'table')}:{named}; "
                "ask its admin to add it to the hub policy"
            )
        seed = job.get("seed", task.seed)
        fraction = job.get("test-fraction", task.test_fraction)
        if int(seed) != task.seed or not math.isclose(float(fraction), task.test_fraction):
            raise PolicyRefusal(
                f"this hub splits task {task.name()} with seed {task.seed} and test fraction "
                f"{task.test_fraction}; the job asked for seed {seed}, fraction {fraction}"
            )
        return task

    def check_training_config(self, lr: float, local_steps: int, l2: float, proximal_mu: float) -> None:
        limits = self.training
        for name, value, bound in (
            ("learning rate", lr, limits.max_lr),
            ("local steps", local_steps, limits.max_local_steps),
            ("l2", l2, limits.max_l2),
            ("proximal mu", proximal_mu, limits.max_proximal_mu),
        ):
            if not math.isfinite(value) or value < 0 or value > bound:
                raise PolicyRefusal(f"{name} {value} is outside this hub's limit (0 .. {bound})")
        if lr <= 0 or local_steps < 1:
            raise PolicyRefusal("the learning rate must be positive and local steps at least 1")

    def check_start_parameters(self, values: list[float]) -> None:
        limits = self.training
        if not all(math.isfinite(v) for v in values):
            raise PolicyRefusal("the start parameters hold a value that is not finite")
        largest = max((abs(v) for v in values), default=0.0)
        norm = math.sqrt(sum(v * v for v in values))
        if largest > limits.max_start_abs or norm > limits.max_start_norm:
            raise PolicyRefusal(
                f"start parameters out of bounds (largest {largest:.3g}, norm {norm:.3g}; this hub "
                f"accepts at most {limits.max_start_abs:g} and {limits.max_start_norm:g})"
            )

    def check_params_per_example(self, n_params: int, n_examples: int) -> None:
        share = self.training.max_params_per_example
        if n_params > share * n_examples:
            raise PolicyRefusal(
                f"a reply of {n_params} parameters from this hub's examples exceeds its limit of "
                f"{share:g} parameters per example"
            )


def load_policy(path: Path | str | None = None) -> HubPolicy:
    """The policy in ``path`` (TOML), or the default one shipped with healthmesh; ConfigError if bad."""
    if path is None or str(path) == "":
        text = resources.files("healthmesh.policy").joinpath(DEFAULT_POLICY).read_text()
        where = "the default hub policy"
    else:
        file = Path(path)
        where = f"hub policy {str(file)!r}"
        try:
            text = file.read_text()
        except OSError as error:
            raise ConfigError(f"{where} cannot be read: {error.strerror or error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where} is not valid TOML: {error}") from None
    try:
        return HubPolicy.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{where}: {field}: {first['msg']}") from None
