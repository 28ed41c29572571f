"""Check generation: every check is a predicate over one source, built from the v5.4 field-level spec.

A ``Check`` names its source (a FROM clause), the predicate of a violating row and the predicate of
a row in the denominator. Checks that share a source run together in one scan (see ``runner``);
each check still states its own standalone SQL in the report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache, cached_property

from healthmesh.cdm import Field, cdm_tables
from healthmesh.cdm.database import HubDatabase
from healthmesh.cdm.vocabulary import VOCABULARY_TABLES
from healthmesh.quality.checktypes import CHECK_TYPES
from healthmesh.quality.thresholds import Thresholds

__all__ = [
    "DEATH_JOIN",
    "PERSON_JOIN",
    "VISIT_JOIN",
    "Check",
    "build_checks",
    "checked_tables",
    "concept_gender_source",
    "concept_join",
    "key_join",
    "observation_period_join",
]

# Vocabulary and results tables are not checked row by row (DQD does the same).
_NOT_ROW_CHECKED = frozenset(VOCABULARY_TABLES) | {"source_to_concept_map", "cohort", "cohort_definition"}

# Joins shared word for word by our checks and DQD's, so that a batch joins each table once. The
# rows per key (``n``) let the runner answer the table's primary-key check from the same grouping.
VISIT_JOIN = (
    "LEFT JOIN (SELECT visit_occurrence_id, min(visit_start_date) AS vs,"
    " max(visit_end_date) AS ve, count(*) AS n FROM visit_occurrence GROUP BY 1) v"
    " ON v.visit_occurrence_id = t.visit_occurrence_id"
)
DEATH_JOIN = (
    "LEFT JOIN (SELECT person_id, min(death_date) AS death_date FROM death GROUP BY person_id) dd"
    " ON dd.person_id = t.person_id"
)


# The person's birth as our checks read it (``birth_date``: year and month) and as DQD's do
# (``dqd_birth_date``: birth_datetime, else year-month-day): one join serves both sets.
PERSON_JOIN = (
    "LEFT JOIN (SELECT person_id, any_value(gender_concept_id) AS gender_concept_id,"
    " min(CASE WHEN year_of_birth BETWEEN 1 AND 9999 THEN make_date(year_of_birth::INTEGER,"
    " CASE WHEN month_of_birth BETWEEN 1 AND 12 THEN month_of_birth::INTEGER ELSE 1 END, 1) END) AS birth_date,"
    " min(coalesce(TRY_CAST(birth_datetime AS DATE), TRY_CAST(concat(year_of_birth, '-',"
    " coalesce(month_of_birth, 1), '-', coalesce(day_of_birth, 1)) AS DATE))) AS dqd_birth_date,"
    " count(*) AS n FROM person GROUP BY person_id) pd ON pd.person_id = t.person_id"
)
_PERSON_DATES = (PERSON_JOIN, DEATH_JOIN)


@dataclass(frozen=True)
class Check:
    check: str
    table: str
    field: str | None
    threshold: float
    source: str
    violating: str
    denominator: str = "TRUE"
    label: str | None = None  # the concept or vocabulary a concept-level check is about
    needs: tuple[str, ...] = ()  # tables the source reads besides ``table``
    joins: tuple[str, ...] = ()  # LEFT JOINs on a unique key: they never change the row count
    counted: str = "*"  # what is counted: rows, or e.g. ``DISTINCT t."x"`` for distinct values
    # The source grouped by the columns the predicates read, with ``n`` rows per group: many checks
    # on a few columns (concept-level checks) then read a few thousand groups, not every row.
    grouped: str | None = None
    concept: tuple[str, int] | None = None  # (column of the grouped source, the one concept counted)

    @property
    def category(self) -> str:
        return CHECK_TYPES[self.check].category

    @property
    def subcategory(self) -> str:
        return CHECK_TYPES[self.check].subcategory

    @property
    def description(self) -> str:
        return CHECK_TYPES[self.check].description

    @property
    def key(self) -> str:
        target = f"{self.table}.{self.field}" if self.field else self.table
        return f"{self.check}:{target}" + (f":{self.label}" if self.label else "")

    @cached_property  # read a dozen times per check by the runner
    def base_table(self) -> str | None:
        """The table the source scans, when the source is a plain table (not a subquery)."""
        first = self.source.split()[0]
        return first if first.isidentifier() else None

    def sql(self) -> str:
        """The check on its own: violating rows and denominator."""
        return (
            f"SELECT count({self.counted}) FILTER (WHERE ({self.violating}) AND ({self.denominator}))"
            f" AS violating_rows, count({self.counted}) FILTER (WHERE {self.denominator}) AS denominator"
            f" FROM {self.source} {' '.join(self.joins)}"
        ).rstrip()


def checked_tables() -> list[str]:
    return [t for t in cdm_tables() if t not in _NOT_ROW_CHECKED]


def _sql_type(datatype: str) -> str | None:
    return {"integer": "BIGINT", "float": "DOUBLE", "date": "DATE", "datetime": "TIMESTAMP"}.get(datatype)


@cache
def _primary_keys() -> dict[str, str]:
    """Each table's primary key field, from the spec (read once: rebuilding the table map per
    foreign key cost 40 ms a run)."""
    return {f.table: f.name for fields in cdm_tables().values() for f in reversed(fields) if f.primary_key}


def _pk(table: str) -> str | None:
    return _primary_keys().get(table)


def _literal(value: object) -> str:
    return f"DATE '{value}'" if hasattr(value, "isoformat") else repr(value)


def _ids(values: list[int]) -> str:
    return ", ".join(str(v) for v in sorted(set(values))) or "NULL"


def concept_join(field: str) -> str:
    """The field's concept row, as ``c_<field>`` (concept ids are unique in CONCEPT)."""
    return f'LEFT JOIN concept c_{field} ON c_{field}.concept_id = t."{field}"'


def key_join(field: str, table: str, key: str) -> str:
    """The referenced table's key, as ``k_<field>`` (distinct: a duplicated key must not add rows)."""
    return f'LEFT JOIN (SELECT DISTINCT {key} FROM {table}) k_{field} ON k_{field}.{key} = t."{field}"'


def observation_period_join(date: str) -> str:
    """The person's observation time that holds ``t.<date>``, as ``op`` (NULL when none does).

    Periods are first merged into disjoint spans per person (islands of overlapping periods; a
    period without both dates or ending before it starts covers no day), so at most one span
    matches a row: the join never adds rows, and ``op.person_id IS NULL`` means "in no period".
    An equi-join on the person with a range condition, where a correlated ``NOT EXISTS`` per row
    cost twice as much (720,000 measurements: 27 ms against 47 ms of CPU).
    """
    s, e = "observation_period_start_date", "observation_period_end_date"
    periods = f"SELECT DISTINCT person_id, {s}, {e} FROM observation_period WHERE person_id IS NOT NULL AND {s} <= {e}"
    opens = (
        f"SELECT person_id, {s}, {e}, CASE WHEN {s} <= max({e}) OVER (PARTITION BY person_id ORDER BY {s}, {e}"
        f" ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) THEN 0 ELSE 1 END AS opens FROM ({periods}) p"
    )
    islands = (
        f"SELECT person_id, {s}, {e}, sum(opens) OVER (PARTITION BY person_id ORDER BY {s}, {e}"
        f" ROWS UNBOUNDED PRECEDING) AS island FROM ({opens}) o"
    )
    return (
        f"LEFT JOIN (SELECT person_id, min({s}) AS op_start, max({e}) AS op_end FROM ({islands}) i"
        f" GROUP BY person_id, island) op ON op.person_id = t.person_id AND t.{date} BETWEEN op.op_start AND op.op_end"
    )


def concept_gender_source(table: str, field: str, grouped: bool = False) -> str:
    """``table``'s records as (concept, the person's gender): one row each, or counted per pair (``n``)."""
    count = ", count(*) AS n" if grouped else ""
    group = " GROUP BY ALL" if grouped else ""
    return (
        f'(SELECT r."{field}" AS {field}, p.gender_concept_id{count} FROM {table} r'
        " LEFT JOIN (SELECT person_id, any_value(gender_concept_id) AS gender_concept_id FROM person"
        f" GROUP BY person_id) p ON p.person_id = r.person_id{group}) t"
    )


def _event_date(fields: list[Field]) -> str | None:
    """The table's main event date: its first date field (the spec lists it first)."""
    return next((f.name for f in fields if f.datatype == "date"), None)


def _field_checks(table: str, fields: list[Field], th: Thresholds) -> list[Check]:
    src = f"{table} t"
    out: list[Check] = []
    names = {f.name for f in fields}

    def add(
        check: str,
        field: str | None,
        violating: str,
        needs: tuple[str, ...] = (),
        joins: tuple[str, ...] = (),
    ) -> None:
        threshold = th.threshold(check, table, field)
        out.append(Check(check, table, field, threshold, src, violating, needs=needs, joins=joins))

    for f in fields:
        col = f't."{f.name}"'
        sql_type = _sql_type(f.datatype)
        if sql_type:
            add("cdmDatatype", f.name, f"{col} IS NOT NULL AND TRY_CAST({col} AS {sql_type}) IS NULL")
        if f.required:
            add("isRequired", f.name, f"{col} IS NULL")
        if f.primary_key:
            add(
                "isPrimaryKey",
                f.name,
                # word for word DQD's isPrimaryKey predicate (dqd.py): one batch computes both once
                f'{col} IN (SELECT "{f.name}" FROM {table} GROUP BY 1 HAVING count(*) > 1)',
            )
        ref = f.foreign_table
        target_pk = _pk(ref) if ref and ref != "concept" else None
        if ref and target_pk and ref not in _NOT_ROW_CHECKED:
            add(  # word for word DQD's isForeignKey (dqd.py): one batch computes both once
                "isForeignKey",
                f.name,
                f"{col} IS NOT NULL AND k_{f.name}.{target_pk} IS NULL",
                needs=(ref,),
                joins=(key_join(f.name, ref, target_pk),),
            )
        if f.foreign_table == "concept":
            c = f"c_{f.name}"
            join = (concept_join(f.name),)
            add("validConceptId", f.name, f"{col} <> 0 AND {c}.concept_id IS NULL", joins=join)
            if f.foreign_domain:
                domains = ", ".join(f"'{d.strip()}'" for d in f.foreign_domain.split(","))
                add(
                    "fkDomain",
                    f.name,
                    f"{c}.concept_id <> 0 AND {c}.domain_id NOT IN ({domains})",  # 0 is "no concept"
                    joins=join,
                )
            if "source_concept_id" not in f.name:
                add(
                    "isStandardValidConcept",
                    f.name,
                    f"{col} <> 0 AND {c}.concept_id IS NOT NULL"
                    f" AND ({c}.standard_concept IS DISTINCT FROM 'S' OR {c}.invalid_reason IS NOT NULL)",
                    joins=join,
                )
                if f.required and "person_id" in names:
                    add("standardConceptRecordCompleteness", f.name, f"{col} = 0")
        if f"{table}.{f.name}" in th.value_completeness_fields:
            add("measureValueCompleteness", f.name, f"{col} IS NULL")
        if f.datatype == "date":
            add("plausibleNotInFuture", f.name, f"{col} > current_date")
            end = f.name.replace("start", "end")
            if "start" in f.name and end in names:
                add("plausibleStartBeforeEnd", f.name, f"t.{end} < {col}")
    for rng in th.field_ranges:
        if rng.table == table and rng.field in names:
            for check, bound, op in (
                ("plausibleValueLow", rng.low, "<"),
                ("plausibleValueHigh", rng.high, ">"),
            ):
                value = th.resolve_bound(bound)
                if value is not None:
                    kind = (
                        "DATE" if hasattr(value, "isoformat") else "DOUBLE"
                    )  # TRY_CAST: bad types are cdmDatatype's
                    add(check, rng.field, f'TRY_CAST(t."{rng.field}" AS {kind}) {op} {_literal(value)}')
    return out


def _temporal_checks(table: str, fields: list[Field], th: Thresholds) -> list[Check]:
    names = {f.name for f in fields}
    event = _event_date(fields)
    if table == "person" or "person_id" not in names or event is None:
        return []
    src = f"{table} t"
    needs = ("person", "death")

    def check(name: str, violating: str, denominator: str = "TRUE", field: str | None = event) -> Check:
        return Check(
            name,
            table,
            field,
            th.threshold(name, table, field),
            src,
            violating,
            denominator,
            needs=needs,
            joins=_PERSON_DATES,
        )

    out = [check("plausibleAfterBirth", f"t.{event} < pd.birth_date")]
    if table != "death":
        out.append(
            check("plausibleBeforeDeath", f"t.{event} > dd.death_date + INTERVAL {th.death_slack_days} DAY")
        )
    if table not in ("death", "observation_period", "payer_plan_period"):
        out.append(
            Check(
                "withinObservationPeriod",
                table,
                event,
                th.threshold("withinObservationPeriod", table, event),
                src,
                "op.person_id IS NULL",  # no observation period holds the event date
                f"t.{event} IS NOT NULL AND pd.person_id IS NOT NULL",
                needs=("person", "observation_period"),
                joins=(PERSON_JOIN, observation_period_join(event)),
            )
        )
    if "visit_occurrence_id" in names and table != "visit_occurrence":
        slack = th.visit_date_slack_days
        out.append(
            Check(
                "withinVisitDates",
                table,
                event,
                th.threshold("withinVisitDates", table, event),
                f"{table} t",
                f"t.{event} < v.vs - INTERVAL {slack} DAY OR t.{event} > v.ve + INTERVAL {slack} DAY",
                "v.visit_occurrence_id IS NOT NULL",
                needs=("visit_occurrence",),
                joins=(VISIT_JOIN,),
            )
        )
    return out


def _concept_ids(db: HubDatabase, codes: set[tuple[str, str]]) -> dict[tuple[str, str], list[int]]:
    """The concept ids of (vocabulary, code) pairs, in one query (one per pair cost 1-2 ms each)."""
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    if codes:
        wanted = sorted({code for _, code in codes})
        rows = db.rows(
            "SELECT vocabulary_id, concept_code, concept_id FROM concept"
            f" WHERE concept_code IN ({', '.join('?' for _ in wanted)})",
            wanted,
        )
        for vocabulary, code, concept_id in rows:
            if (vocabulary, code) in codes:
                found[(vocabulary, code)].append(int(concept_id))
    return found


def _concept_checks(db: HubDatabase, th: Thresholds) -> list[Check]:
    out: list[Check] = []
    codes = {(r.vocabulary, r.code) for r in th.measurement_ranges}
    codes |= {(c.vocabulary, c.code) for c in th.sex_specific_conditions}
    concept_ids = _concept_ids(db, codes)
    ancestors = sorted(
        {i for c in th.sex_specific_conditions for i in concept_ids.get((c.vocabulary, c.code), [])}
    )
    descendants: dict[int, list[int]] = defaultdict(list)
    if ancestors:
        for ancestor, descendant in db.rows(
            "SELECT ancestor_concept_id, descendant_concept_id FROM concept_ancestor"
            f" WHERE ancestor_concept_id IN ({_ids(ancestors)})"
        ):
            descendants[int(ancestor)].append(int(descendant))
    for rng in th.measurement_ranges:
        ids = concept_ids.get((rng.vocabulary, rng.code), [])
        if not ids:
            continue
        label = f"{rng.vocabulary} {rng.code} {rng.name}"
        of_concept = (
            f"(t.measurement_concept_id IN ({_ids(ids)}) OR t.measurement_source_concept_id IN ({_ids(ids)}))"
            " AND t.value_as_number IS NOT NULL"
        )
        for check, op, bound in (("plausibleValueLow", "<", rng.low), ("plausibleValueHigh", ">", rng.high)):
            out.append(
                Check(
                    check,
                    "measurement",
                    "value_as_number",
                    th.threshold(check, "measurement", "value_as_number"),
                    "measurement t",
                    f"t.value_as_number {op} {bound}",
                    of_concept,
                    label=label,
                )
            )
    for cond in th.sex_specific_conditions:
        ids = concept_ids.get((cond.vocabulary, cond.code), [])
        if not ids:
            continue
        # The concept and its descendants, listed: a literal list filters far faster than a subquery.
        concepts = f"t.condition_concept_id IN ({_ids(ids + [d for i in ids for d in descendants[i]])})"
        out.append(
            Check(
                "plausibleGender",
                "condition_occurrence",
                "condition_concept_id",
                th.threshold("plausibleGender", "condition_occurrence", "condition_concept_id"),
                concept_gender_source("condition_occurrence", "condition_concept_id"),
                f"t.gender_concept_id <> {cond.gender_concept_id}",
                f"({concepts})",
                label=f"{cond.vocabulary} {cond.code} {cond.name}",
                needs=("person",),
                grouped=concept_gender_source("condition_occurrence", "condition_concept_id", grouped=True),
            )
        )
    return out


def _vocabulary_pairs(table: str, fields: list[Field]) -> list[tuple[str, str]]:
    """(concept field, its source concept field) of a table, for ``unmappedBySourceVocabulary``."""
    names = {f.name for f in fields}
    pairs = []
    for f in fields:
        if not f.name.endswith("_concept_id") or "source" in f.name or not f.required:
            continue
        source_field = f.name.replace("_concept_id", "_source_concept_id")
        if source_field in names:
            pairs.append((f.name, source_field))
    return pairs


def _source_vocabularies(db: HubDatabase, fields: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """The vocabularies of each (table, source concept field)'s distinct values, in one query."""
    if not fields:
        return {}
    parts = [
        # the field's distinct values joined, not every row
        f"SELECT '{table}' AS t_name, '{field}' AS f_name, coalesce(c.vocabulary_id, 'unknown') AS vocabulary"
        f' FROM (SELECT DISTINCT "{field}" FROM {table}) t LEFT JOIN concept c ON c.concept_id = t."{field}"'
        for table, field in fields
    ]
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for table, field, vocabulary in db.rows(f"SELECT DISTINCT * FROM ({' UNION ALL '.join(parts)}) v"):
        found[(str(table), str(field))].append(str(vocabulary))
    return found


def _source_vocabulary_checks(
    table: str, pairs: list[tuple[str, str]], vocabularies: dict[tuple[str, str], list[str]], th: Thresholds
) -> list[Check]:
    """Share of concept id 0 per source vocabulary, for each concept field paired with a source concept."""
    out: list[Check] = []
    for field, source_field in pairs:
        join = concept_join(source_field)
        sc = f"c_{source_field}"
        for vocabulary in sorted(vocabularies.get((table, source_field), [])):
            out.append(
                Check(
                    "unmappedBySourceVocabulary",
                    table,
                    field,
                    th.threshold("unmappedBySourceVocabulary", table, field),
                    f"{table} t",
                    f"t.{field} = 0",
                    f"coalesce({sc}.vocabulary_id, 'unknown') = '{vocabulary}'",
                    label=str(vocabulary),
                    joins=(join,),
                )
            )
    return out


def _table_checks(th: Thresholds) -> list[Check]:
    out = [
        Check(
            "measurePersonCompleteness",
            table,
            "person_id",
            th.threshold("measurePersonCompleteness", table, "person_id"),
            # word for word DQD's measurePersonCompleteness (dqd.py): one anti-join serves both
            "person t",
            f"t.person_id NOT IN (SELECT DISTINCT person_id FROM {table} WHERE person_id IS NOT NULL)",
            needs=(table,),
        )
        for table in th.person_completeness_tables
    ]
    out.append(
        Check(
            "observationPeriodOverlap",
            "observation_period",
            "observation_period_start_date",
            th.threshold("observationPeriodOverlap", "observation_period", "observation_period_start_date"),
            "observation_period t",
            "EXISTS (SELECT 1 FROM observation_period o WHERE o.person_id = t.person_id"
            " AND o.observation_period_id <> t.observation_period_id"
            " AND o.observation_period_start_date <= t.observation_period_end_date"
            " AND o.observation_period_end_date >= t.observation_period_start_date)",
        )
    )
    return out


def build_checks(db: HubDatabase, th: Thresholds, present: dict[str, set[str]]) -> list[Check]:
    """All row-level checks for the tables ``present`` (table -> its columns) in the hub."""
    checks: list[Check] = []
    tables = {
        table: [f for f in fields if f.name in present[table]]
        for table, fields in cdm_tables().items()
        if table not in _NOT_ROW_CHECKED and table in present
    }
    pairs = {table: _vocabulary_pairs(table, fields) for table, fields in tables.items()}
    vocabularies = _source_vocabularies(db, [(t, source) for t, ps in pairs.items() for _, source in ps])
    for table, existing in tables.items():
        checks += _field_checks(table, existing, th)
        checks += _temporal_checks(table, existing, th)
        checks += _source_vocabulary_checks(table, pairs[table], vocabularies, th)
    checks += _concept_checks(db, th)
    checks += _table_checks(th)
    return checks
