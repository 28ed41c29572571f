"""Cohort definitions (JSON, validated at load time) compiled to SQL over the OMOP CDM."""

from __future__ import annotations

from healthmesh.cohorts.compiler import (
    CohortResult,
    build_cohort,
    compile_cohort,
    concept_set_sql,
    to_dialect,
)
from healthmesh.cohorts.definition import (
    DOMAINS,
    CohortDefinition,
    ConceptItem,
    EndStrategy,
    EntryEvent,
    InclusionRule,
    Window,
    builtin_cohorts,
    load_cohort,
)

__all__ = [
    "DOMAINS",
    "CohortDefinition",
    "CohortResult",
    "ConceptItem",
    "EndStrategy",
    "EntryEvent",
    "InclusionRule",
    "Window",
    "build_cohort",
    "builtin_cohorts",
    "compile_cohort",
    "concept_set_sql",
    "load_cohort",
    "to_dialect",
]
