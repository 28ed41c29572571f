"""Cohort definitions as JSON documents, validated at load time.

A definition names concept sets (with descendants through ``concept_ancestor``), the entry events,
the observation the entry needs before and after it, a washout, inclusion rules applied in order
(their attrition is what ``healthmesh cohort count`` prints) and an end strategy. It follows the
shape of OHDSI Circe cohort expressions, trimmed to what the platform's tasks use::

    {
      "name": "adults-40-without-t2dm",
      "concept_sets": {"outpatient": [{"concept_id": 9202}],
                       "t2dm": [{"vocabulary_id": "SNOMED", "concept_code": "44054006", "descendants": true}]},
      "entry": {"domain": "visit", "concept_set": "outpatient", "limit": "all"},
      "prior_observation_days": 365,
      "inclusion_rules": [
        {"name": "aged 40 or older", "age_min": 40},
        {"name": "no type 2 diabetes before", "domain": "condition", "concept_set": "t2dm",
         "window": {"start_days": null, "end_days": 0}, "max_count": 0}],
      "limit": "first",
      "end": {"strategy": "observation_period_end"}
    }
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from healthmesh.errors import CohortError

__all__ = [
    "DOMAINS",
    "LIMITS",
    "CohortDefinition",
    "ConceptItem",
    "EndStrategy",
    "EntryEvent",
    "InclusionRule",
    "Window",
    "builtin_cohorts",
    "load_cohort",
]

# domain name -> (table, concept column, date column)
DOMAINS: dict[str, tuple[str, str, str]] = {
    "condition": ("condition_occurrence", "condition_concept_id", "condition_start_date"),
    "drug": ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    "procedure": ("procedure_occurrence", "procedure_concept_id", "procedure_date"),
    "measurement": ("measurement", "measurement_concept_id", "measurement_date"),
    "observation": ("observation", "observation_concept_id", "observation_date"),
    "visit": ("visit_occurrence", "visit_concept_id", "visit_start_date"),
    "death": ("death", "cause_concept_id", "death_date"),
}

# What one definition may ask of the hub: each rule, concept and set is SQL the hub runs for the caller.
LIMITS = {"inclusion_rules": 40, "concept_sets": 40, "concepts": 500, "gender_concept_ids": 10}
_DAYS = 100_000  # any window, washout or observation requirement, in days (some 270 years)
_TEXT = 200
ConceptId = Annotated[int, Field(ge=0, le=2**31 - 1)]
Days = Annotated[int, Field(ge=-_DAYS, le=_DAYS)]
Age = Annotated[int, Field(ge=0, le=200)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]

Domain = Literal["condition", "drug", "procedure", "measurement", "observation", "visit", "death"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConceptItem(_Strict):
    """One concept of a concept set, by id or by vocabulary and code; optionally with its descendants."""

    concept_id: ConceptId | None = None
    vocabulary_id: str | None = Field(default=None, max_length=50)
    concept_code: str | None = Field(default=None, max_length=100)
    descendants: bool = False
    exclude: bool = False

    @model_validator(mode="after")
    def _one_way_to_name(self) -> ConceptItem:
        by_code = self.vocabulary_id is not None and self.concept_code is not None
        if (self.concept_id is None) == (not by_code):
            raise ValueError("give either concept_id, or vocabulary_id with concept_code")
        return self


class Window(_Strict):
    """Days relative to the index date; None means unbounded. ``end_days`` 0 includes the index day."""

    start_days: Days | None = None
    end_days: Days | None = 0


class EntryEvent(_Strict):
    """The events that can start a cohort episode."""

    domain: Domain
    concept_set: str | None = Field(default=None, max_length=_TEXT)
    age_min: Age | None = None
    age_max: Age | None = None
    limit: Literal["first", "all"] = "all"


class InclusionRule(_Strict):
    """One inclusion rule: an occurrence count in a window, an age range, or a gender."""

    name: str = Field(max_length=_TEXT)
    domain: Domain | None = None
    concept_set: str | None = Field(default=None, max_length=_TEXT)
    window: Window = Window()
    min_count: Count = 1
    max_count: Count | None = None
    age_min: Age | None = None
    age_max: Age | None = None
    gender_concept_ids: list[ConceptId] | None = Field(default=None, max_length=LIMITS["gender_concept_ids"])

    @model_validator(mode="after")
    def _one_kind(self) -> InclusionRule:
        kinds = [
            self.domain is not None,
            self.age_min is not None or self.age_max is not None,
            self.gender_concept_ids is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError(f"rule {self.name!r} must be one of: domain occurrence, age range, gender")
        if self.max_count is not None and self.max_count < 0:
            raise ValueError(f"rule {self.name!r}: max_count must be >= 0; got {self.max_count}")
        return self

    @property
    def effective_min(self) -> int:
        return 0 if self.max_count == 0 else self.min_count


class EndStrategy(_Strict):
    """Cohort end: the end of the observation period, or a fixed number of days after the start."""

    strategy: Literal["observation_period_end", "fixed"] = "observation_period_end"
    days: Days = 0


class CohortDefinition(_Strict):
    """A cohort definition (see the module docstring)."""

    name: str = Field(max_length=_TEXT)
    description: str = Field(default="", max_length=2000)
    concept_sets: dict[str, list[ConceptItem]] = Field(default_factory=dict)
    entry: EntryEvent
    prior_observation_days: int = Field(default=0, ge=0, le=_DAYS)
    post_observation_days: int = Field(default=0, ge=0, le=_DAYS)
    washout_days: int = Field(default=0, ge=0, le=_DAYS)
    inclusion_rules: list[InclusionRule] = Field(default_factory=list)
    limit: Literal["first", "all"] = "all"
    end: EndStrategy = EndStrategy()

    @model_validator(mode="before")
    @classmethod
    def _within_limits(cls, document: Any) -> Any:
        """Refuse a definition too large to run, before any of it is validated (or compiled)."""
        if not isinstance(document, dict):
            return document
        rules, sets = document.get("inclusion_rules"), document.get("concept_sets")
        if isinstance(rules, list) and len(rules) > LIMITS["inclusion_rules"]:
            raise ValueError(
                f"{len(rules)} inclusion rules; a definition may have at most {LIMITS['inclusion_rules']}"
            )
        if isinstance(sets, dict):
            if len(sets) > LIMITS["concept_sets"]:
                raise ValueError(
                    f"{len(sets)} concept sets; a definition may have at most {LIMITS['concept_sets']}"
                )
            concepts = sum(len(items) for items in sets.values() if isinstance(items, list))
            if concepts > LIMITS["concepts"]:
                raise ValueError(
                    f"{concepts} concepts in its sets; a definition may list at most {LIMITS['concepts']}"
                )
            if any(len(str(name)) > _TEXT for name in sets):
                raise ValueError(f"a concept set name is longer than {_TEXT} characters")
        return document

    @model_validator(mode="after")
    def _concept_sets_exist(self) -> CohortDefinition:
        named = [("entry", self.entry.concept_set)] + [(r.name, r.concept_set) for r in self.inclusion_rules]
        for where, name in named:
            if name is not None and name not in self.concept_sets:
                known = ", ".join(sorted(self.concept_sets)) or "none"
                raise ValueError(
                    f"{where} uses concept set {name!r}, which is not defined (defined: {known})"
                )
        for rule in self.inclusion_rules:
            if rule.domain is not None and rule.domain != "death" and rule.concept_set is None:
                raise ValueError(f"rule {rule.name!r} needs a concept_set for domain {rule.domain!r}")
        return self


def _builtin_dir() -> Path:
    return Path(str(resources.files("healthmesh.cohorts") / "definitions"))


def builtin_cohorts() -> dict[str, Path]:
    """The cohort definitions shipped with healthmesh, by name."""
    return {path.stem: path for path in sorted(_builtin_dir().glob("*.json"))}


def load_cohort(source: str | Path | dict) -> CohortDefinition:
    """A definition from a dict, a JSON file, or the name of a built-in definition."""
    if isinstance(source, dict):
        document = source
        where = "definition"
    else:
        path = Path(source)
        if not path.is_file():
            builtin = builtin_cohorts()
            if str(source) in builtin:
                path = builtin[str(source)]
            else:
                raise CohortError(
                    f"cohort definition {str(source)!r} not found; give a JSON file or one of: {', '.join(builtin)}"
                )
        where = str(path)
        try:
            document = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise CohortError(f"{where} is not valid JSON: {error}") from error
    try:
        return CohortDefinition.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "definition"
        raise CohortError(f"{where}: {location}: {first['msg']}") from None
