"""The thresholds file: data, validated at load (pydantic), never thresholds in code."""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from healthmesh.errors import QualityError
from healthmesh.quality.checktypes import CHECK_TYPES

__all__ = ["CodedRange", "FieldRange", "SexSpecificCondition", "Thresholds", "load_thresholds"]

Percent = float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldRange(_Strict):
    table: str
    field: str
    low: float | str | None = None  # a number, an ISO date, or "current_year"
    high: float | str | None = None


class CodedRange(_Strict):
    vocabulary: str
    code: str
    name: str
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> CodedRange:
        if self.low > self.high:
            raise ValueError(f"{self.vocabulary} {self.code}: low {self.low} is above high {self.high}")
        return self


class SexSpecificCondition(_Strict):
    vocabulary: str
    code: str
    name: str
    gender_concept_id: Literal[8507, 8532]


class Thresholds(_Strict):
    description: str = ""
    defaults: dict[str, Percent]
    overrides: dict[str, Percent] = Field(default_factory=dict)
    person_completeness_tables: list[str] = Field(default_factory=list)
    value_completeness_fields: list[str] = Field(default_factory=list)
    visit_date_slack_days: int = Field(7, ge=0)
    death_slack_days: int = Field(30, ge=0)
    field_ranges: list[FieldRange] = Field(default_factory=list)
    measurement_ranges: list[CodedRange] = Field(default_factory=list)
    sex_specific_conditions: list[SexSpecificCondition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Thresholds:
        missing = sorted(set(CHECK_TYPES) - set(self.defaults))
        unknown = sorted(set(self.defaults) - set(CHECK_TYPES))
        if missing or unknown:
            raise ValueError(f"defaults must name every check type; missing {missing}, unknown {unknown}")
        for key, value in {**self.defaults, **self.overrides}.items():
            if not 0 <= value <= 100:
                raise ValueError(f"threshold {key} must be a percentage in 0..100; got {value}")
        for key in self.overrides:
            check, _, target = key.partition(":")
            if check not in CHECK_TYPES or "." not in target:
                raise ValueError(f"override {key!r} must look like 'checkType:table.field'")
        return self

    def threshold(self, check: str, table: str, field: str | None) -> float:
        return self.overrides.get(f"{check}:{table}.{field}", self.defaults[check])

    def resolve_bound(self, bound: float | str | None) -> float | date | None:
        if bound is None or isinstance(bound, float | int):
            return bound
        if bound == "current_year":
            return float(date.today().year)
        try:
            return date.fromisoformat(bound)
        except ValueError as error:
            raise QualityError(
                f"range bound {bound!r} is neither a number, an ISO date nor 'current_year'"
            ) from error


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    """Read and validate a thresholds file (default: the bundled ``thresholds.json``)."""
    if path is None:
        text = resources.files("healthmesh.quality").joinpath("thresholds.json").read_text(encoding="utf-8")
        where = "bundled thresholds.json"
    else:
        target = Path(path)
        if not target.is_file():
            raise QualityError(f"thresholds file {target} not found; pass an existing JSON file or omit it")
        text = target.read_text(encoding="utf-8")
        where = str(target)
    try:
        return Thresholds.model_validate(json.loads(text))
    except json.JSONDecodeError as error:
        raise QualityError(f"{where} is not valid JSON: {error}") from error
    except ValidationError as error:
        first = error.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise QualityError(f"{where}: {loc}: {first['msg']}") from error
