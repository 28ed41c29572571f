"""Compile a cohort definition to SQL over the CDM and run it, counting attrition at every step.

Each step is one ``CREATE OR REPLACE TEMP TABLE`` over the step before, so the attrition counts
(events and persons) come from the very tables the cohort is built from. Given a ``cell_key``
(``Release.person_key``), each step also carries the key of its person set, which the release path
needs to perturb the step's count (the same persons, however phrased, get the same noise). The SQL is written in the
DuckDB dialect with portable constructs (no QUALIFY; window functions in subqueries); ``to_dialect``
transpiles it with sqlglot for PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import sqlglot

from healthmesh.cdm import HubDatabase
from healthmesh.cohorts.definition import DOMAINS, CohortDefinition, ConceptItem, Window
from healthmesh.errors import CohortError
from healthmesh.privacy.release import Release

__all__ = [
    "CohortResult",
    "build_cohort",
    "compile_cohort",
    "concept_set_sql",
    "release_attrition",
    "to_dialect",
]


@dataclass
class CohortResult:
    """A built cohort: its table (``subject_id, cohort_start_date, cohort_end_date, observation_end``)."""

    name: str
    table: str
    attrition: list[dict[str, object]] = field(default_factory=list)

    @property
    def persons(self) -> int:
        return int(self.attrition[-1]["persons"]) if self.attrition else 0  # type: ignore[call-overload]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _item_sql(item: ConceptItem) -> str:
    if item.concept_id is not None:
        base = f"SELECT CAST({int(item.concept_id)} AS BIGINT) AS concept_id"
    else:
        assert item.vocabulary_id is not None and item.concept_code is not None
        base = (
            "SELECT concept_id FROM concept WHERE vocabulary_id = "
            f"{_quote(item.vocabulary_id)} AND concept_code = {_quote(item.concept_code)}"
        )
    if not item.descendants:
        return base
    return (
        f"{base} UNION SELECT ca.descendant_concept_id AS concept_id FROM concept_ancestor ca "
        f"JOIN ({base}) b ON ca.ancestor_concept_id = b.concept_id"
    )


def concept_set_sql(name: str, items: list[ConceptItem]) -> str:
    """SELECT of ``set_name, concept_id`` for one concept set (included items minus excluded ones)."""
    included = [_item_sql(i) for i in items if not i.exclude]
    excluded = [_item_sql(i) for i in items if i.exclude]
    if not included:
        raise CohortError(f"concept set {name!r} includes no concepts; add at least one concept")
    body = " UNION ".join(f"({sql})" for sql in included)
    if excluded:
        body = f"SELECT concept_id FROM ({body}) inc EXCEPT SELECT concept_id FROM ({' UNION '.join(excluded)}) exc"
    return f"SELECT {_quote(name)} AS set_name, concept_id FROM ({body}) s"


def _window_sql(column: str, window: Window) -> str:
    parts = []
    if window.start_days is not None:
        parts.append(f"{column} >= s.index_date + {int(window.start_days)}")
    if window.end_days is not None:
        parts.append(f"{column} <= s.index_date + {int(window.end_days)}")
    return " AND ".join(parts) if parts else "TRUE"


def _events_sql(prefix: str, domain: str, concept_set: str | None) -> tuple[str, str]:
    """FROM-clause body and date column of the events of one domain in one concept set."""
    table, concept, date = DOMAINS[domain]
    where = (
        f" WHERE {concept} IN (SELECT concept_id FROM {prefix}_cs WHERE set_name = {_quote(concept_set)})"
        if concept_set
        else ""
    )
    return f"(SELECT person_id, {date} AS event_date FROM {table}{where})", "event_date"


def _first_only(source: str) -> str:
    return (
        "SELECT person_id, index_date, op_start, op_end FROM (SELECT *, row_number() OVER "
        f"(PARTITION BY person_id ORDER BY index_date) AS rn FROM {source}) r WHERE rn = 1"
    )


def _age_filter(source: str, age_min: int | None, age_max: int | None) -> str:
    age = "(year(s.index_date) - p.year_of_birth)"
    conditions = []
    if age_min is not None:
        conditions.append(f"{age} >= {int(age_min)}")
    if age_max is not None:
        conditions.append(f"{age} <= {int(age_max)}")
    return (
        f"SELECT s.* FROM {source} s JOIN person p ON p.person_id = s.person_id "
        f"WHERE {' AND '.join(conditions) or 'TRUE'}"
    )


def compile_cohort(definition: CohortDefinition, prefix: str) -> list[tuple[str, str, str]]:
    """The steps of a cohort as ``(label, table, sql)``; the last table is the cohort."""
    steps: list[tuple[str, str, str]] = []
    if definition.concept_sets:
        union = " UNION ALL ".join(concept_set_sql(n, items) for n, items in definition.concept_sets.items())
        steps.append(("concept sets", f"{prefix}_cs", union))
    else:
        steps.append(
            (
                "concept sets",
                f"{prefix}_cs",
                "SELECT '' AS set_name, CAST(0 AS BIGINT) AS concept_id WHERE FALSE",
            )
        )
    entry = definition.entry
    events, date = _events_sql(prefix, entry.domain, entry.concept_set)
    counter = iter(range(1, 1000))

    def add(label: str, sql: str) -> str:
        table = f"{prefix}_s{next(counter)}"
        steps.append((label, table, sql))
        return table

    current = add(
        "entry events in an observation period",
        "SELECT DISTINCT e.person_id, e.event_date AS index_date, op.observation_period_start_date AS op_start, "
        f"op.observation_period_end_date AS op_end FROM {events} e JOIN observation_period op "
        f"ON op.person_id = e.person_id AND e.{date} BETWEEN op.observation_period_start_date "
        "AND op.observation_period_end_date",
    )
    raw_entry = current
    if definition.prior_observation_days or definition.post_observation_days:
        current = add(
            f"{definition.prior_observation_days} days observed before, {definition.post_observation_days} after",
            f"SELECT * FROM {current} WHERE index_date >= op_start + {definition.prior_observation_days} "
            f"AND index_date <= op_end - {definition.post_observation_days}",
        )
    if entry.age_min is not None or entry.age_max is not None:
        current = add(
            f"entry age {entry.age_min if entry.age_min is not None else ''}-{entry.age_max if entry.age_max is not None else ''}",
            _age_filter(current, entry.age_min, entry.age_max),
        )
    if definition.washout_days:
        current = add(
            f"no entry event in the {definition.washout_days} days before",
            f"SELECT s.* FROM {current} s WHERE NOT EXISTS (SELECT 1 FROM {raw_entry} w WHERE "
            f"w.person_id = s.person_id AND w.index_date < s.index_date AND "
            f"w.index_date >= s.index_date - {definition.washout_days})",
        )
    if entry.limit == "first":
        current = add("first entry event per person", _first_only(current))
    for rule in definition.inclusion_rules:
        if rule.domain is not None:
            table, concept, rule_date = DOMAINS[rule.domain]
            member = (
                f" AND t.{concept} IN (SELECT concept_id FROM {prefix}_cs WHERE set_name = {_quote(rule.concept_set)})"
                if rule.concept_set
                else ""
            )
            events = (
                f"FROM {table} t WHERE t.person_id = s.person_id{member} AND "
                f"{_window_sql('t.' + rule_date, rule.window)}"
            )
            if rule.max_count == 0:
                bounds = [f"NOT EXISTS (SELECT 1 {events})"]
            elif rule.effective_min == 1 and rule.max_count is None:
                bounds = [f"EXISTS (SELECT 1 {events})"]
            else:
                count = f"(SELECT count(*) {events})"
                bounds = [f"{count} >= {rule.effective_min}"]
                if rule.max_count is not None:
                    bounds.append(f"{count} <= {int(rule.max_count)}")
            sql = f"SELECT s.* FROM {current} s WHERE {' AND '.join(bounds)}"
        elif rule.gender_concept_ids is not None:
            ids = ", ".join(str(int(i)) for i in rule.gender_concept_ids) or "NULL"
            sql = (
                f"SELECT s.* FROM {current} s JOIN person p ON p.person_id = s.person_id "
                f"WHERE p.gender_concept_id IN ({ids})"
            )
        else:
            sql = _age_filter(current, rule.age_min, rule.age_max)
        current = add(rule.name, sql)
    if definition.limit == "first":
        current = add("first qualifying episode per person", _first_only(current))
    end = (
        "op_end"
        if definition.end.strategy == "observation_period_end"
        else f"least(op_end, index_date + {int(definition.end.days)})"
    )
    steps.append(
        (
            "cohort",
            f"{prefix}_cohort",
            f"SELECT person_id AS subject_id, index_date AS cohort_start_date, {end} AS cohort_end_date, "
            f"op_end AS observation_end FROM {current}",
        )
    )
    return steps


def to_dialect(sql: str, dialect: str) -> str:
    """Transpile one compiled statement from DuckDB SQL to another engine's dialect (e.g. ``postgres``)."""
    return sqlglot.transpile(sql, read="duckdb", write=dialect)[0]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower())[:40]


def build_cohort(
    db: HubDatabase,
    definition: CohortDefinition,
    prefix: str | None = None,
    cell_key: Callable[[np.ndarray], int] | None = None,
) -> CohortResult:
    """Run a compiled definition on a hub; the cohort lands in the temp table ``<prefix>_cohort``.

    With ``cell_key``, each attrition step also holds ``cell_key`` of its distinct person ids.
    """
    prefix = prefix or f"hm_c_{_slug(definition.name)}"
    attrition: list[dict[str, object]] = []
    try:
        for label, table, sql in compile_cohort(definition, prefix):
            db.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}")
            if label in ("concept sets", "cohort"):
                continue
            events, persons = db.con.execute(
                f"SELECT count(*), count(DISTINCT person_id) FROM {table}"
            ).fetchone()  # type: ignore[misc]
            step: dict[str, object] = {"step": label, "events": int(events), "persons": int(persons)}
            if cell_key is not None:
                ids = db.df(f"SELECT DISTINCT person_id FROM {table}")["person_id"].to_numpy()
                step["cell_key"] = cell_key(ids.astype(np.int64))
            attrition.append(step)
    except duckdb.Error as error:
        raise CohortError(
            f"cohort {definition.name!r} failed on this hub: {str(error).splitlines()[0]}"
        ) from error
    return CohortResult(name=definition.name, table=f"{prefix}_cohort", attrition=attrition)


def release_attrition(attrition: list[dict[str, object]], release: Release) -> list[dict[str, object]]:
    """Attrition steps as they may leave the hub: each step's persons through ``release``, keyed by its
    person set (build the cohort with ``cell_key=release.person_key``).

    A step is withheld only by the release rule itself, never because of how many persons it removed:
    withholding on a small true difference would tell an attacker that the difference is small.
    """
    released: list[dict[str, object]] = []
    for step in attrition:
        if "cell_key" not in step:
            raise CohortError(f"attrition step {step['step']!r} has no cell key; build it with cell_key=")
        shown = release.count(int(step["persons"]), int(step["cell_key"]))  # type: ignore[call-overload]
        released.append({"step": step["step"], "persons": shown, "suppressed": shown is None})
    return released
