"""OHDSI DataQualityDashboard v2.8 checks: DQD's check list, thresholds and verdicts; our SQL.

DQD's own CSVs (``dqd_data/``, Apache-2.0, unchanged) say which check type applies to which table,
field and concept, with which threshold. Each applicable check becomes a ``Check`` (a predicate
of a violating row and of a row in the denominator, over one source) and runs batched with the
other checks of its table and type (``runner.count_checks``): one scan counts them all. The SQL is
written here from DQD's check descriptions; DQD's templates are not used.

Verdicts follow DQD (``evaluateThresholds``, ``calculateNotApplicableStatus``), in this order:
ERROR when the check's SQL failed; NOT_APPLICABLE when its table or field does not exist, its
table is empty, its field is never populated, or (concept level) its concept has no record; FAIL
when the threshold is empty or 0 and any row violates, or when the percent violated exceeds the
threshold; PASS otherwise. The 8 vocabulary tables are not checked (DQD's default), nor is
``note_nlp.offset``. The 3 check types DQD deprecated (``DEPRECATED``) still run, as in DQD 2.8.4.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from healthmesh.errors import QualityError
from healthmesh.quality.checks import (
    DEATH_JOIN,
    PERSON_JOIN,
    VISIT_JOIN,
    Check,
    concept_gender_source,
    concept_join,
    key_join,
)

__all__ = [
    "DEPRECATED",
    "DQD_VERSION",
    "DqdResult",
    "DqdSpec",
    "check_types",
    "dqd_checks",
    "evaluate",
    "overview",
    "to_check",
]

DQD_VERSION = "2.8.4"

# DQD's default tablesToExclude: the vocabulary tables.
EXCLUDED_TABLES = frozenset(
    {
        "CONCEPT",
        "VOCABULARY",
        "CONCEPT_ANCESTOR",
        "CONCEPT_RELATIONSHIP",
        "CONCEPT_CLASS",
        "CONCEPT_SYNONYM",
        "RELATIONSHIP",
        "DOMAIN",
    }
)

# Deprecated by DQD in favour of plausibleAfterBirth / plausibleStartBeforeEnd, plausibleBeforeDeath
# and plausibleGenderUseDescendants, but still in its CSVs and still run by DQD 2.8.4's defaults
# (2,374 checks = the 2,002 of the 24 current types + these 372): run here too, so the counts agree.
DEPRECATED = {
    "plausibleTemporalAfter": "replaced by plausibleAfterBirth and plausibleStartBeforeEnd",
    "plausibleDuringLife": "replaced by plausibleBeforeDeath",
    "plausibleGender": "replaced by plausibleGenderUseDescendants",
}

_GENDER = {"MALE": 8507, "FEMALE": 8532}
_DEATH_SLACK_DAYS = 60  # DQD: an event more than 60 days after death is implausible
_VISIT_SLACK_DAYS = 7  # DQD: one week either side of the visit


@dataclass(frozen=True)
class CheckType:
    """One row of DQD's check descriptions."""

    name: str
    level: str  # TABLE | FIELD | CONCEPT
    description: str  # with @parameters
    context: str
    category: str
    subcategory: str
    sql_file: str
    evaluation_filter: str
    severity: str


@dataclass(frozen=True)
class DqdSpec:
    """One DQD check: its type applied to one table, field or concept (and unit)."""

    name: str
    level: str
    table: str  # upper case, as DQD names it
    field: str | None
    concept_id: str | None
    unit_concept_id: str | None
    threshold: float | None
    notes: str | None
    row: dict[str, str] = dataclasses.field(compare=False, hash=False, repr=False)

    @property
    def kind(self) -> CheckType:
        return check_types()[self.name]

    @property
    def check_id(self) -> str:
        """DQD's checkId: level, name, table, field, concept and unit, lower case, joined by '_'."""
        parts = [self.level, self.name, self.table, self.field, self.concept_id, self.unit_concept_id]
        return "_".join(p.replace(" ", "") for p in parts if p and p.replace(" ", "")).lower()

    @property
    def description(self) -> str:
        """DQD's description with its parameters filled in (upper case, as DQD renders them)."""

        def fill(match: re.Match[str]) -> str:
            value = self.row.get(match.group(1))
            return match.group(0) if value is None else value.upper()

        return re.sub(r"@(\w+)", fill, self.kind.description).strip()


def _read(name: str) -> list[dict[str, str]]:
    text = resources.files("healthmesh.quality").joinpath(f"dqd_data/{name}").read_text(encoding="utf-8-sig")
    return [{k: (v or "").strip() for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


@cache
def check_types() -> dict[str, CheckType]:
    """DQD's check types (its check descriptions file), by name."""
    return {
        r["checkName"]: CheckType(
            r["checkName"],
            r["checkLevel"],
            r["checkDescription"],
            r["kahnContext"],
            r["kahnCategory"],
            r["kahnSubcategory"],
            r["sqlFile"],
            r["evaluationFilter"],
            r["severity"],
        )
        for r in _read("OMOP_CDMv5.4_Check_Descriptions.csv")
    }


_CLAUSE = re.compile(r"\s*(\w+)\s*(==|!=)\s*'([^']*)'\s*")


def _applies(evaluation_filter: str, row: dict[str, str]) -> bool:
    """DQD's evaluationFilter (``a=='Yes' & b!=''``) on one row of a level file."""
    for clause in evaluation_filter.split("&"):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise QualityError(f"DQD evaluation filter {evaluation_filter!r} is not understood")
        name, op, value = match.groups()
        if (row.get(name, "") == value) != (op == "=="):
            return False
    return True


def _threshold(row: dict[str, str], name: str) -> float | None:
    text = row.get(f"{name}Threshold", "")
    try:
        return float(text) if text else None
    except ValueError as error:
        raise QualityError(f"DQD threshold {name}Threshold={text!r} is not a number") from error


@cache
def dqd_checks() -> tuple[DqdSpec, ...]:
    """Every check DQD 2.8 runs on a CDM v5.4 with its default settings."""
    levels = {
        "TABLE": _read("OMOP_CDMv5.4_Table_Level.csv"),
        "FIELD": _read("OMOP_CDMv5.4_Field_Level.csv"),
        "CONCEPT": _read("OMOP_CDMv5.4_Concept_Level.csv"),
    }
    specs: list[DqdSpec] = []
    for kind in check_types().values():
        if not kind.evaluation_filter or not kind.sql_file:
            continue
        for row in levels[kind.level]:
            table = row["cdmTableName"].upper()
            if table in EXCLUDED_TABLES or row.get("cdmFieldName", "").lower() == "offset":
                continue
            if not _applies(kind.evaluation_filter, row):
                continue
            specs.append(
                DqdSpec(
                    kind.name,
                    kind.level,
                    table,
                    row["cdmFieldName"].upper() if kind.level != "TABLE" else None,
                    row.get("conceptId") or None,
                    row.get("unitConceptId") or None,
                    _threshold(row, kind.name),
                    row.get(f"{kind.name}Notes") or None,
                    row,
                )
            )
    return tuple(specs)


# ---- SQL: each check as a predicate over one source ---------------------------------------------


def _ids(text: str) -> str:
    ids = [p.strip() for p in text.split(",") if p.strip()]
    if not all(re.fullmatch(r"-?\d+", i) for i in ids):
        raise QualityError(f"DQD concept list {text!r} is not a list of integers")
    return ", ".join(ids)


def _date_literal(text: str) -> str:
    digits = text.strip("'")
    if not re.fullmatch(r"\d{8}", digits):
        raise QualityError(f"DQD date bound {text!r} is not YYYYMMDD")
    return f"DATE '{digits[:4]}-{digits[4:6]}-{digits[6:]}'"


def _bound(text: str) -> tuple[str, str]:
    """A plausible-value bound as (SQL value, SQL type to compare as)."""
    compact = text.replace(" ", "").upper()
    if compact == "DATEADD(DD,1,GETDATE())":
        return "current_date + INTERVAL 1 DAY", "DATE"
    if compact == "YEAR(GETDATE())+1":
        return "extract(year FROM current_date) + 1", "DOUBLE"
    if text.startswith("'"):
        return _date_literal(text), "DATE"
    try:
        return repr(float(text)), "DOUBLE"
    except ValueError as error:
        raise QualityError(f"DQD plausible value bound {text!r} is not understood") from error


_BIRTH = PERSON_JOIN  # shared with our checks: one person join per batch
_DEATH = DEATH_JOIN
_VISIT = VISIT_JOIN
_PERIODS = (
    "(SELECT person_id, max(CASE WHEN observation_period_start_date <= prev_end + INTERVAL 1 DAY"
    " THEN 1 ELSE 0 END) AS overlaps FROM (SELECT person_id, observation_period_start_date,"
    " max(observation_period_end_date) OVER (PARTITION BY person_id ORDER BY observation_period_start_date,"
    " observation_period_end_date, observation_period_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
    " AS prev_end FROM observation_period WHERE person_id IS NOT NULL) op GROUP BY person_id) t"
)


def _quoted(values: str) -> str:
    return ", ".join("'" + v.strip().replace("'", "''") + "'" for v in values.split(",") if v.strip())


def to_check(spec: DqdSpec) -> Check:
    """The check as a ``Check`` the runner batches (cdmTable and cdmField are answered elsewhere)."""
    table = spec.table.lower()
    col = (spec.field or "").lower()
    f = f't."{col}"'
    row = spec.row
    threshold = spec.threshold if spec.threshold is not None else 0.0

    def check(
        violating: str,
        denominator: str = "TRUE",
        source: str | None = None,
        needs: tuple[str, ...] = (),
        joins: tuple[str, ...] = (),
        counted: str = "*",
        grouped: str | None = None,
        concept: tuple[str, int] | None = None,
    ) -> Check:
        return Check(
            spec.name,
            table,
            col or None,
            threshold,
            source or f"{table} t",
            violating,
            denominator,
            label=spec.check_id,
            needs=needs,
            joins=joins,
            counted=counted,
            grouped=grouped,
            concept=concept,
        )

    builders: dict[str, Callable[[], Check]] = {
        "isRequired": lambda: check(f"{f} IS NULL"),
        "cdmDatatype": lambda: check(f"{f} IS NOT NULL AND TRY_CAST({f} AS BIGINT) IS NULL"),
        "isPrimaryKey": lambda: check(f'{f} IN (SELECT "{col}" FROM {table} GROUP BY 1 HAVING count(*) > 1)'),
        "isForeignKey": lambda: _foreign_key(spec, check),
        "fkDomain": lambda: check(
            f"c_{col}.concept_id <> 0 AND c_{col}.domain_id NOT IN ({_quoted(row['fkDomain'])})",
            needs=("concept",),
            joins=(concept_join(col),),
        ),
        "fkClass": lambda: check(
            f"c_{col}.concept_id <> 0 AND c_{col}.concept_class_id NOT IN ({_quoted(row['fkClass'])})",
            needs=("concept",),
            joins=(concept_join(col),),
        ),
        "isStandardValidConcept": lambda: check(
            f"c_{col}.concept_id <> 0 AND (c_{col}.standard_concept IS DISTINCT FROM 'S'"
            f" OR c_{col}.invalid_reason IS NOT NULL)",
            needs=("concept",),
            joins=(concept_join(col),),
        ),
        "measureValueCompleteness": lambda: check(f"{f} IS NULL"),
        "standardConceptRecordCompleteness": lambda: check(f"{f} = 0"),
        "sourceConceptRecordCompleteness": lambda: check(f"{f} = 0"),
        "sourceValueCompleteness": lambda: check(
            f't."{row["standardConceptFieldName"].lower()}" = 0', counted=f"DISTINCT {f}"
        ),
        "plausibleTemporalAfter": lambda: _temporal_after(spec, check),
        "plausibleDuringLife": lambda: check(
            f"TRY_CAST({f} AS DATE) > dd.death_date + INTERVAL {_DEATH_SLACK_DAYS} DAY",
            f"{f} IS NOT NULL AND dd.person_id IS NOT NULL",
            needs=("death",),
            joins=(_DEATH,),
        ),
        "plausibleGender": lambda: _gender(
            spec, f"t.{col} = {_ids(spec.concept_id or '')}", check, concept=(col, int(spec.concept_id or 0))
        ),
        "plausibleValueLow": lambda: _plausible_value(f, row["plausibleValueLow"], "<", check),
        "plausibleValueHigh": lambda: _plausible_value(f, row["plausibleValueHigh"], ">", check),
        "plausibleStartBeforeEnd": lambda: check(
            f'TRY_CAST({f} AS DATE) > TRY_CAST(t."{row["plausibleStartBeforeEndFieldName"].lower()}" AS DATE)'
        ),
        "plausibleAfterBirth": lambda: check(
            f"TRY_CAST({f} AS DATE) < pd.dqd_birth_date",
            f"{f} IS NOT NULL",
            needs=("person",),
            joins=(_BIRTH,),
        ),
        "plausibleBeforeDeath": lambda: check(
            f"TRY_CAST({f} AS DATE) > dd.death_date + INTERVAL {_DEATH_SLACK_DAYS} DAY",
            f"{f} IS NOT NULL AND dd.person_id IS NOT NULL",
            needs=("death",),
            joins=(_DEATH,),
        ),
        "withinVisitDates": lambda: check(
            f"TRY_CAST({f} AS DATE) < v.vs - INTERVAL {_VISIT_SLACK_DAYS} DAY"
            f" OR TRY_CAST({f} AS DATE) > v.ve + INTERVAL {_VISIT_SLACK_DAYS} DAY",
            "v.visit_occurrence_id IS NOT NULL",
            needs=("visit_occurrence",),
            joins=(_VISIT,),
        ),
        "measurePersonCompleteness": lambda: check(
            f"t.person_id NOT IN (SELECT DISTINCT person_id FROM {table} WHERE person_id IS NOT NULL)",
            source="person t",
            needs=("person",),
        ),
        "measureConditionEraCompleteness": lambda: check(
            "t.person_id NOT IN (SELECT person_id FROM condition_era WHERE person_id IS NOT NULL)",
            source="(SELECT DISTINCT person_id FROM condition_occurrence WHERE person_id IS NOT NULL) t",
            needs=("condition_occurrence",),
        ),
        "measureObservationPeriodOverlap": lambda: check("t.overlaps = 1", source=_PERIODS),
        "plausibleGenderUseDescendants": lambda: _gender(
            spec,
            f"t.{col} IN (SELECT descendant_concept_id FROM concept_ancestor"
            f" WHERE ancestor_concept_id IN ({_ids(spec.concept_id or '')}))",
            check,
            "concept_ancestor",
        ),
        "plausibleUnitConceptIds": lambda: _units(spec, check),
    }
    if spec.name not in builders:
        raise QualityError(f"DQD check type {spec.name} has no SQL here")
    return builders[spec.name]()


def _foreign_key(spec: DqdSpec, check: Callable[..., Check]) -> Check:
    col = (spec.field or "").lower()
    ref, key = spec.row["fkTableName"].lower(), spec.row["fkFieldName"].lower()
    if (ref, key) == ("concept", "concept_id"):  # the join the other concept checks read
        return check(
            f't."{col}" IS NOT NULL AND c_{col}.concept_id IS NULL',
            needs=(ref,),
            joins=(concept_join(col),),
        )
    return check(
        f't."{col}" IS NOT NULL AND k_{col}.{key} IS NULL',
        needs=(ref,),
        joins=(key_join(col, ref, key),),
    )


def _gender(
    spec: DqdSpec,
    concepts: str,
    check: Callable[..., Check],
    *needs: str,
    concept: tuple[str, int] | None = None,
) -> Check:
    """Records of the concepts whose person is not of the plausible gender (DQD: gender <> it)."""
    table, col = spec.table.lower(), (spec.field or "").lower()
    gender = _GENDER[spec.row[spec.name].upper()]
    return check(
        f"t.gender_concept_id IS DISTINCT FROM {gender}",
        concepts,
        source=concept_gender_source(table, col),
        needs=("person", *needs),
        grouped=concept_gender_source(table, col, grouped=True),
        concept=concept,
    )


def _units(spec: DqdSpec, check: Callable[..., Check]) -> Check:
    """Records of the concept with a value and a unit source value, whose unit is not a plausible one."""
    table, col = spec.table.lower(), (spec.field or "").lower()
    units = spec.row["plausibleUnitConceptIds"]
    measured = f"FROM {table} WHERE value_as_number IS NOT NULL AND unit_source_value IS NOT NULL"
    return check(
        f"t.unit_concept_id NOT IN ({_ids(units)})" if units else "t.unit_concept_id IS NOT NULL",
        f"t.{col} = {_ids(spec.concept_id or '')}",
        source=f'(SELECT "{col}" AS {col}, unit_concept_id {measured}) t',
        grouped=f'(SELECT "{col}" AS {col}, unit_concept_id, count(*) AS n {measured} GROUP BY ALL) t',
        concept=(col, int(spec.concept_id or 0)),
    )


def _temporal_after(spec: DqdSpec, check: Callable[..., Check]) -> Check:
    """A date not before another: a field of the same row, or the person's birth."""
    f = f't."{(spec.field or "").lower()}"'
    other_table = spec.row["plausibleTemporalAfterTableName"].lower()
    other = spec.row["plausibleTemporalAfterFieldName"].lower()
    if other_table == "person":
        return check(f"TRY_CAST({f} AS DATE) < pd.dqd_birth_date", needs=("person",), joins=(_BIRTH,))
    if other_table == spec.table.lower():
        return check(f'TRY_CAST({f} AS DATE) < TRY_CAST(t."{other}" AS DATE)')
    raise QualityError(f"DQD plausibleTemporalAfter against {other_table}.{other} is not supported")


def _plausible_value(f: str, bound_text: str, op: str, check: Callable[..., Check]) -> Check:
    bound, kind = _bound(bound_text)
    return check(f"TRY_CAST({f} AS {kind}) {op} {bound}", f"{f} IS NOT NULL")


# ---- verdicts -------------------------------------------------------------------------------------


@dataclass
class DqdResult:
    """One DQD check's outcome, with DQD's verdict."""

    spec: DqdSpec
    sql: str
    violating: int | None
    denominator: int | None
    error: str | None = None
    seconds: float = 0.0
    status: str = "PASS"  # PASS | FAIL | NOT_APPLICABLE | ERROR
    not_applicable_reason: str | None = None

    @property
    def pct_violated(self) -> float | None:
        """DQD's pctViolatedRows: a fraction (0..1), 0 for an empty denominator."""
        if self.violating is None or self.denominator is None:
            return None
        return self.violating / self.denominator if self.denominator else 0.0

    def threshold_failed(self) -> bool:
        if self.error is not None or self.violating is None:
            return False
        threshold = self.spec.threshold
        if not threshold:  # no threshold or 0: any violating row fails
            return self.violating > 0
        return (self.pct_violated or 0.0) * 100 > threshold

    def dqd_row(self) -> dict[str, Any]:
        """The result as one element of DQD's ``CheckResults`` (exact counts: the hub's own file)."""
        kind = self.spec.kind
        return {
            "numViolatedRows": self.violating,
            "pctViolatedRows": self.pct_violated,
            "numDenominatorRows": self.denominator,
            "executionTime": f"{self.seconds:.3f} secs",
            "queryText": self.sql,
            "checkName": self.spec.name,
            "checkLevel": self.spec.level,
            "checkDescription": self.spec.description,
            "cdmTableName": self.spec.table,
            "cdmFieldName": self.spec.field,
            "conceptId": self.spec.concept_id,
            "unitConceptId": self.spec.unit_concept_id,
            "sqlFile": kind.sql_file,
            "category": kind.category,
            "subcategory": kind.subcategory or None,
            "context": kind.context,
            "warning": None,
            "error": self.error,
            "checkId": self.spec.check_id,
            "failed": int(self.status == "FAIL"),
            "passed": int(self.status == "PASS"),
            "isError": int(self.status == "ERROR"),
            "notApplicable": int(self.status == "NOT_APPLICABLE"),
            "notApplicableReason": self.not_applicable_reason,
            "thresholdValue": self.spec.threshold,
            "notesValue": self.spec.notes,
        }


def evaluate(results: list[DqdResult]) -> list[DqdResult]:
    """Give every result DQD's verdict (in place; returns ``results``)."""
    failed = {id(r): r.threshold_failed() for r in results}
    table_missing = {r.spec.table for r in results if r.spec.name == "cdmTable" and failed[id(r)]}
    field_missing = {
        (r.spec.table, r.spec.field) for r in results if r.spec.name == "cdmField" and failed[id(r)]
    }
    completeness = [r for r in results if r.spec.name == "measureValueCompleteness" and r.error is None]
    table_empty = {r.spec.table for r in completeness if r.denominator == 0}
    field_empty = {(r.spec.table, r.spec.field) for r in completeness if r.denominator == r.violating}
    occurrences_absent = "CONDITION_OCCURRENCE" in table_missing | table_empty

    for r in results:
        name, table, key = r.spec.name, r.spec.table, (r.spec.table, r.spec.field)
        concept_absent = r.spec.level == "CONCEPT" and r.denominator == 0
        reason: str | None = None
        if name == "measureConditionEraCompleteness":
            reason = "Table CONDITION_OCCURRENCE is empty." if occurrences_absent else None
        elif name == "measurePersonCompleteness":
            reason = f"Table {table} does not exist." if table in table_missing else None
        elif name == "cdmTable":
            reason = None
        elif name == "cdmField":
            reason = f"Table {table} does not exist." if table in table_missing else None
        elif table in table_missing:
            reason = f"Table {table} does not exist."
        elif key in field_missing:
            reason = f"Field {table}.{r.spec.field} does not exist."
        elif r.error is not None:
            reason = None
        elif table in table_empty:
            reason = f"Table {table} is empty."
        elif name == "measureValueCompleteness":
            reason = None
        elif key in field_empty:
            reason = f"Field {table}.{r.spec.field} is not populated."
        elif concept_absent and r.spec.unit_concept_id is None:
            reason = f"{r.spec.field}={r.spec.concept_id} is missing from the {table} table."
        elif concept_absent:
            reason = (
                f"Combination of {r.spec.field}={r.spec.concept_id}, unitConceptId={r.spec.unit_concept_id}"
                f" and VALUE_AS_NUMBER IS NOT NULL is missing from the {table} table."
            )
        r.not_applicable_reason = reason
        if reason is not None:
            r.status = "NOT_APPLICABLE"
        elif r.error is not None:
            r.status = "ERROR"
        else:
            r.status = "FAIL" if failed[id(r)] else "PASS"
    return results


def overview(results: list[DqdResult]) -> dict[str, Any]:
    """DQD's ``Overview`` (its ``summarizeResults``, quirks kept), plus counts per Kahn context.

    As in DQD, ``countPassed`` is every check that did not fail (errors and not-applicable checks
    included) and ``countOverallFailed`` counts threshold failures only; ``countNotApplicable``,
    ``countIsError`` and ``countStrictlyPassed`` are added to say what DQD's counts mix.
    """
    total = len(results)
    failed = sum(r.status == "FAIL" for r in results)
    passed = total - failed
    out: dict[str, Any] = {
        "countTotal": total,
        "countPassed": passed,
        "countErrorFailed": sum(r.error is not None for r in results),
        "countThresholdFailed": failed,
        "countOverallFailed": failed,
        "percentPassed": round(100 * passed / total, 2) if total else None,
        "percentFailed": round(100 * failed / total, 2) if total else None,
    }
    for group, attribute in (
        (("Plausibility", "Conformance", "Completeness"), "category"),
        (("Validation", "Verification"), "context"),
    ):
        for value in group:
            mine = [r for r in results if getattr(r.spec.kind, attribute) == value]
            out[f"countTotal{value}"] = len(mine)
            out[f"countFailed{value}"] = sum(r.status == "FAIL" for r in mine)
            out[f"countPassed{value}"] = sum(r.status == "PASS" for r in mine)
    out["countNotApplicable"] = sum(r.status == "NOT_APPLICABLE" for r in results)
    out["countIsError"] = sum(r.status == "ERROR" for r in results)
    out["countStrictlyPassed"] = sum(r.status == "PASS" for r in results)
    return out
