"""The check types: name, Kahn category and subcategory, and what a violation means.

Names follow the OHDSI Data Quality Dashboard where a DQD check of the same meaning exists.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHECK_TYPES", "CheckType"]


@dataclass(frozen=True)
class CheckType:
    name: str
    category: str  # conformance | completeness | plausibility (Kahn framework)
    subcategory: str  # value | relational | computational | atemporal | temporal
    level: str  # table | field | concept
    description: str


_TYPES = [
    CheckType("cdmTable", "conformance", "relational", "table", "the CDM table exists"),
    CheckType("cdmField", "conformance", "relational", "field", "the CDM field exists"),
    CheckType(
        "cdmDatatype", "conformance", "value", "field", "values of the field can be read as its spec datatype"
    ),
    CheckType("isRequired", "conformance", "relational", "field", "a required field is not null"),
    CheckType("isPrimaryKey", "conformance", "relational", "field", "primary-key values are unique"),
    CheckType(
        "isForeignKey", "conformance", "relational", "field", "a foreign key points to an existing row"
    ),
    CheckType(
        "validConceptId", "conformance", "value", "field", "a concept id (other than 0) exists in CONCEPT"
    ),
    CheckType("fkDomain", "conformance", "value", "field", "a concept id belongs to the field's domain"),
    CheckType(
        "isStandardValidConcept",
        "conformance",
        "value",
        "field",
        "a standard concept field holds a standard, valid concept (or 0)",
    ),
    CheckType(
        "standardConceptRecordCompleteness",
        "completeness",
        "value",
        "field",
        "share of records whose standard concept id is 0 (unmapped)",
    ),
    CheckType(
        "unmappedBySourceVocabulary",
        "completeness",
        "value",
        "field",
        "share of records with concept id 0 among records of one source vocabulary",
    ),
    CheckType(
        "measurePersonCompleteness",
        "completeness",
        "atemporal",
        "table",
        "share of persons with no record in the table",
    ),
    CheckType(
        "measureValueCompleteness", "completeness", "atemporal", "field", "share of records with a null value"
    ),
    CheckType("plausibleAfterBirth", "plausibility", "temporal", "field", "the event is not before birth"),
    CheckType(
        "plausibleBeforeDeath",
        "plausibility",
        "temporal",
        "field",
        "the event is not later than death plus the allowed slack (30 days)",
    ),
    CheckType(
        "withinObservationPeriod",
        "plausibility",
        "temporal",
        "field",
        "the event date lies within one of the person's observation periods",
    ),
    CheckType(
        "withinVisitDates",
        "plausibility",
        "temporal",
        "field",
        "the event date lies within its visit's dates (plus slack days)",
    ),
    CheckType(
        "plausibleStartBeforeEnd", "plausibility", "temporal", "field", "start date is not after end date"
    ),
    CheckType("plausibleNotInFuture", "plausibility", "temporal", "field", "the date is not after today"),
    CheckType(
        "plausibleValueLow", "plausibility", "atemporal", "field", "the value is not below the plausible low"
    ),
    CheckType(
        "plausibleValueHigh",
        "plausibility",
        "atemporal",
        "field",
        "the value is not above the plausible high",
    ),
    CheckType(
        "plausibleGender",
        "plausibility",
        "atemporal",
        "concept",
        "a sex-specific condition is recorded for a person of that sex",
    ),
    CheckType(
        "observationPeriodOverlap",
        "plausibility",
        "temporal",
        "table",
        "a person's observation periods do not overlap",
    ),
]

CHECK_TYPES: dict[str, CheckType] = {t.name: t for t in _TYPES}
