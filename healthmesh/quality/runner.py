"""Running the checks: one scan per source, many checks per scan (set-based SQL, batched)."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from healthmesh.cdm import cdm_tables
from healthmesh.cdm.database import HubDatabase
from healthmesh.errors import CDMError
from healthmesh.privacy.release import Release
from healthmesh.quality.checks import PERSON_JOIN, VISIT_JOIN, Check, build_checks, key_join
from healthmesh.quality.checktypes import CHECK_TYPES
from healthmesh.quality.dqd import DQD_VERSION, DqdResult, dqd_checks, evaluate, to_check
from healthmesh.quality.report import CheckResult, QualityReport
from healthmesh.quality.thresholds import Thresholds, load_thresholds

__all__ = ["Counted", "column_types", "count_checks", "present_columns", "run_checks", "run_quality"]

# How many checks share one SELECT at most: wide enough to scan each table once, narrow enough to
# keep one query's plan small.
_BATCH = 400


def present_columns(db: HubDatabase) -> dict[str, set[str]]:
    """The hub's tables and their columns, as the catalog sees them."""
    present: dict[str, set[str]] = defaultdict(set)
    for table, column in db.rows(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main'"
    ):
        present[str(table).lower()].add(str(column).lower())
    return dict(present)


def _structural(present: dict[str, set[str]], th: Thresholds) -> list[CheckResult]:
    """cdmTable and cdmField: answered from the database catalog."""
    results = []
    for table, fields in cdm_tables().items():
        sql = f"SELECT count(*) = 0 FROM information_schema.tables WHERE table_name = '{table}'"
        results.append(
            CheckResult.of(
                "cdmTable",
                table,
                None,
                th.threshold("cdmTable", table, None),
                sql,
                int(table not in present),
                1,
            )
        )
        for f in fields:
            sql = (
                "SELECT count(*) = 0 FROM information_schema.columns"
                f" WHERE table_name = '{table}' AND column_name = '{f.name}'"
            )
            missing = int(table in present and f.name not in present[table])
            results.append(
                CheckResult.of(
                    "cdmField",
                    table,
                    f.name,
                    th.threshold("cdmField", table, f.name),
                    sql,
                    missing,
                    int(table in present),
                )
            )
    return results


_INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT"})
_CAST = re.compile(r'TRY_CAST\(t\."(\w+)" AS (BIGINT|DATE|DOUBLE)\)')
_NOT_NULL_AND_NULL = re.compile(r't\."(\w+)" IS NOT NULL AND t\."\1" IS NULL')
_IS_NULL = re.compile(r'\(t\."(\w+)" IS NULL\)')


def column_types(db: HubDatabase) -> dict[tuple[str, str], str]:
    """Each column's declared type, as the catalog states it (upper case)."""
    rows = db.rows(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'main'"
    )
    return {(str(t).lower(), str(c).lower()): str(d).upper() for t, c, d in rows}


def _cheaper(predicate: str, table: str | None, types: dict[tuple[str, str], str]) -> str:
    """The same predicate without casts the column's declared type makes no-ops.

    A BIGINT column holds only integers and a DATE column only dates: ``TRY_CAST`` of such a
    column to its own kind is the column, and "not NULL yet not castable" is then never true.
    Only for a plain table source (``types`` describes its columns).
    """
    if table is None:
        return predicate

    def plain(match: re.Match[str]) -> str:
        declared = types.get((table, match.group(1).lower()), "")
        target = match.group(2)
        same = declared in _INTEGER_TYPES if target == "BIGINT" else declared == target
        return f't."{match.group(1)}"' if same else match.group(0)

    return _NOT_NULL_AND_NULL.sub("FALSE", _CAST.sub(plain, predicate))


_BARE_COLUMN = re.compile(r'\bt\.([a-z_]\w*)\b(?!")')
# A date plus or minus whole days: DATE arithmetic, not a TIMESTAMP per row compared to a DATE.
_DAYS = re.compile(r"\b(v\.vs|v\.ve|dd\.death_date|current_date) ([+-]) INTERVAL (\d+) DAY\b")
_DATE_OPERANDS = {
    "v.vs": ("visit_occurrence", "visit_start_date"),
    "v.ve": ("visit_occurrence", "visit_end_date"),
    "dd.death_date": ("death", "death_date"),
}


def _normalized(predicate: str, types: dict[tuple[str, str], str]) -> str:
    """The same predicate written one way, so that our checks and DQD's share their aggregates.

    Columns are quoted alike (``t.x`` is ``t."x"``), and ``d + INTERVAL n DAY`` of a DATE is
    ``d + n``: the same day, compared as a DATE (the comparison with a TIMESTAMP cast every row:
    the visit-dates query of 720,000 measurements 25% faster).
    """

    def days(match: re.Match[str]) -> str:
        operand = _DATE_OPERANDS.get(match.group(1))
        if operand is not None and types.get(operand) != "DATE":
            return match.group(0)
        return f"{match.group(1)} {match.group(2)} {match.group(3)}"

    return _DAYS.sub(days, _BARE_COLUMN.sub(r't."\1"', predicate))


def _aggregate(c: Check, predicate: str, count_if: bool = False) -> str:
    """The count of rows (or distinct values) meeting ``predicate``, as a plain aggregate.

    ``sum(CASE ...)`` rather than ``count(*) FILTER (...)``: DuckDB computes hundreds of the former
    in one pass several times faster (measured: 10-40 ms against 300-400 ms for 46 checks), and
    DuckDB's ``count_if`` faster still (the measurement table's main query 25% less CPU).
    """
    if c.grouped is not None:  # each row of the grouped source stands for n rows
        if predicate == "TRUE":
            return "coalesce(sum(t.n), 0)"
        return f"coalesce(sum(CASE WHEN {predicate} THEN t.n ELSE 0 END), 0)"
    if c.counted != "*":
        value = c.counted.removeprefix("DISTINCT ")
        if predicate == "TRUE":
            return f"count(DISTINCT {value})"
        return f"count(DISTINCT CASE WHEN {predicate} THEN {value} END)"
    if predicate == "TRUE":  # the row count: no expression per row
        return "count(*)"
    if predicate == "(FALSE)":
        return "0"
    if (null := _IS_NULL.fullmatch(predicate)) is not None:  # NULLs: the row count less the values
        return f'(count(*) - count(t."{null.group(1)}"))'
    if count_if:
        return f"coalesce(count_if({predicate}), 0)"
    return f"coalesce(sum(CASE WHEN {predicate} THEN 1 ELSE 0 END), 0)"


def _both(violating: str, denominator: str) -> str:
    """The predicate of a violating row in the denominator, without a no-op ``AND (TRUE)``."""
    return f"({violating})" if denominator == "TRUE" else f"({violating}) AND ({denominator})"


def _batch_sql(
    batch: list[Check], types: dict[tuple[str, str], str] | None = None, count_if: bool = False
) -> tuple[str, list[tuple[int, int]]]:
    """One query counting every check of ``batch``; for each check, its two columns in the row.

    Identical aggregates (the same denominator of many checks) are computed once. ``count_if``:
    DuckDB's ``count_if`` for plain row counts (not every engine has it).
    """
    types = types or {}
    columns: dict[str, int] = {}
    positions = []
    for c in batch:
        pair = []
        table = c.base_table if c.grouped is None else None
        violating = _cheaper(_normalized(c.violating, types), table, types)
        denominator = _cheaper(_normalized(c.denominator, types), table, types)
        both = _both(violating, denominator)
        for predicate in (both, denominator if denominator == "TRUE" else f"({denominator})"):
            pair.append(columns.setdefault(_aggregate(c, predicate, count_if), len(columns)))
        positions.append((pair[0], pair[1]))
    joins = list(dict.fromkeys(j for c in batch for j in c.joins))
    source = batch[0].grouped or batch[0].source
    return f"SELECT {', '.join(columns)} FROM {source} {' '.join(joins)}", positions


def _result(
    c: Check, violating: int | None, denominator: int | None, error: str | None = None
) -> CheckResult:
    return CheckResult.of(
        c.check, c.table, c.field, c.threshold, c.sql(), violating, denominator, label=c.label, error=error
    )


@dataclass(frozen=True)
class Counted:
    """What one check counted: violating rows and denominator, or the reason it could not run."""

    violating: int | None
    denominator: int | None
    error: str | None = None
    seconds: float = 0.0  # its share of the time of the query that counted it


_JOIN_KIND = re.compile(r"\)?\s(c_|k_|pd|pb|dd|op|v)\w*\s+ON\s")


def _scan_kind(c: Check) -> str:
    """Which checks of one source share a query.

    A check with a subquery in its predicates gets one query per check type (DuckDB plans a few
    anti-joins well, dozens in one plan badly). The others share one query per kind of joined
    table (none, concepts, keys of clinical tables, person dates, visits): measured on the
    measurement table, all 16 joins in one query cost 1.5 times the sum of these split queries.
    Joins are named alike by every check, so a query joins each table once.
    """
    if "SELECT" in c.violating.upper() or "SELECT" in c.denominator.upper():
        return f"type {c.check}"
    kinds = set()
    for join in c.joins:
        match = _JOIN_KIND.search(join)
        kinds.add(match.group(1) if match else join)
    kinds = {"person" if k in ("pd", "pb", "dd", "op") else k for k in kinds}
    return "joins " + ",".join(sorted(kinds))


_T_COLUMN = re.compile(r'\bt\.(?:"(\w+)"|(\w+))')


def _per_column(c: Check) -> Check:
    """A concept check that reads one column of its table, counted over that column's distinct values.

    Concept checks read one field and its concept row: grouping the table by the field first
    (``n`` rows per value) joins a few hundred concepts instead of every row, and every check of
    that field shares the grouping. Same counts: each group stands for its ``n`` rows.
    """
    table = c.base_table
    text = " ".join((c.violating, c.denominator, *c.joins))
    if table is None or not c.joins or c.grouped is not None or c.counted != "*":
        return c
    if "SELECT" in c.violating.upper() or "SELECT" in c.denominator.upper():
        return c
    columns = {a or b for a, b in _T_COLUMN.findall(text)}
    # Concept joins only: grouping a table by a key column (person, visit) cost more than joining
    # every row to that key (10,000-person sample: 0.70 s CPU for the run against 0.62 s).
    if len(columns) != 1 or not all(j.startswith("LEFT JOIN concept c_") for j in c.joins):
        return c
    (column,) = columns
    return replace(c, grouped=f'(SELECT "{column}", count(*) AS n FROM {table} GROUP BY 1) t')


_KEY_JOIN = re.compile(r'LEFT JOIN \(SELECT DISTINCT (\w+) FROM (\w+)\) k_(\w+) ON k_\3\.\1 = t\."\3"')
_SUBQUERY_JOIN = re.compile(r"LEFT JOIN \((SELECT .*)\) (\w+) ON (.*)", re.DOTALL)


def _subquery(join: str) -> str:
    match = _SUBQUERY_JOIN.fullmatch(join)
    assert match is not None, join
    return match.group(1)


# Key joins that the person and visit joins of the date checks answer as well (same key, same
# table: a person id has no PERSON row exactly when it has no ``pd`` row): one join fewer per table.
_SHARED_KEYS = {
    key_join("person_id", "person", "person_id"): (PERSON_JOIN, "pd.person_id"),
    key_join("visit_occurrence_id", "visit_occurrence", "visit_occurrence_id"): (
        VISIT_JOIN,
        "v.visit_occurrence_id",
    ),
}
# The same keys, grouped as the person and visit joins group them: a key join by another field
# (``preceding_visit_occurrence_id``) reads that grouping too, which is computed once a run.
_GROUPED_KEYS = {
    ("person", "person_id"): _subquery(PERSON_JOIN),
    ("visit_occurrence", "visit_occurrence_id"): _subquery(VISIT_JOIN),
}


def _fewer_joins(c: Check, sizes: dict[str, int], unpopulated: set[tuple[str, str]]) -> Check:
    """The same check with its foreign-key join answered by a join its batch has, or by none.

    A key of an empty table matches nothing: ``k_x.key IS NULL`` is then always true and the join
    is dropped. A field without any value never violates (``t.x IS NOT NULL AND ...``): its join
    is dropped too. A key join to PERSON or VISIT_OCCURRENCE by the row's own person or visit
    becomes the person or visit join the date checks of the table read anyway.
    """
    if not any(j.startswith("LEFT JOIN (SELECT DISTINCT") for j in c.joins):
        return c
    joins = list(c.joins)
    violating, denominator = c.violating, c.denominator
    for join in c.joins:
        match = _KEY_JOIN.fullmatch(join)
        if match is None:
            continue
        key, table, field = match.groups()
        alias = f"k_{field}.{key}"
        if sizes.get(table) == 0 or (c.table, field) in unpopulated:
            always = "TRUE" if sizes.get(table) == 0 else "FALSE"
            joins.remove(join)
            violating = violating.replace(f"{alias} IS NULL", always)
            denominator = denominator.replace(f"{alias} IS NULL", always)
        elif join in _SHARED_KEYS:
            shared, column = _SHARED_KEYS[join]
            joins[joins.index(join)] = shared
            violating, denominator = violating.replace(alias, column), denominator.replace(alias, column)
        elif (table, key) in _GROUPED_KEYS:
            grouped = _GROUPED_KEYS[(table, key)]
            joins[joins.index(join)] = f'LEFT JOIN ({grouped}) k_{field} ON {alias} = t."{field}"'
    return replace(c, joins=tuple(dict.fromkeys(joins)), violating=violating, denominator=denominator)


def _primary_key_subquery(table: str, field: str) -> str:
    """The values of ``field`` held by more than one row, as both sets of checks write it."""
    return f'SELECT "{field}" FROM {table} GROUP BY 1 HAVING count(*) > 1'


def _unpopulated(db: HubDatabase, checks: list[Check], sizes: dict[str, int]) -> set[tuple[str, str]]:
    """(table, field) of the foreign-key fields without any value, in tables with rows.

    One ``count(field)`` query per table (DuckDB reads validity masks only): a field no row fills
    (``provider_id`` of most sources) then needs no join to its referenced table.
    """
    fields: dict[str, set[str]] = defaultdict(set)
    for c in checks:
        if c.base_table is not None and sizes.get(c.base_table, 0) > 0:
            for join in c.joins:
                if (match := _KEY_JOIN.fullmatch(join)) is not None and sizes.get(match.group(2), 0) > 0:
                    fields[c.base_table].add(match.group(3))
    empty = set()
    for table, names in fields.items():
        ordered = sorted(names)
        try:
            counts = ", ".join(f'count("{f}")' for f in ordered)
            row = db.rows(f"SELECT {counts} FROM {table}")[0]
        except CDMError:
            continue
        empty |= {(table, f) for f, n in zip(ordered, row, strict=True) if n == 0}
    return empty


def _row_counts(db: HubDatabase, tables: set[str]) -> dict[str, int]:
    """Each table's row count, in one query (a query per table cost a few ms each)."""
    names = sorted(tables)
    if not names:
        return {}
    try:
        rows = db.rows(" UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in names))
    except CDMError:
        return db.table_counts(names)
    return {str(t): int(n) for t, n in rows}


def _skip_absent_concepts(
    db: HubDatabase, checks: list[Check], group: list[int], counted: list[Counted | None]
) -> list[int]:
    """Count 0 of 0 for the concept-level checks of a concept the table has no record of.

    Most of DQD's concept-level checks name concepts a hub does not have; their counts are 0 and 0
    whatever the predicate, and one ``DISTINCT`` over the grouped source says which they are.
    """
    first = checks[group[0]]
    # Any check of the group names the column: ours (without a concept) may come first.
    column = next((c.concept[0] for i in group if (c := checks[i]).concept is not None), None)
    if first.grouped is None or column is None:
        return group
    try:
        present = {row[0] for row in db.rows(f"SELECT DISTINCT {column} FROM {first.grouped}")}
    except CDMError:
        return group  # the batch will report the error
    kept = []
    for i in group:
        concept = checks[i].concept
        if concept is not None and concept[0] == column and concept[1] not in present:
            counted[i] = Counted(0, 0)
        else:
            kept.append(i)
    return kept


def count_checks(db: HubDatabase, checks: list[Check], present: dict[str, set[str]]) -> list[Counted]:
    """Count every check, in the order given: checks of one source and type share one scan.

    One query per source and check type: wide enough to batch hundreds of checks, narrow enough
    that DuckDB plans each join and subquery well (one query per table was 5x slower at 100k
    persons). A failing batch falls back to one query per check, so one bad check cannot hide the
    others.
    """
    own = checks  # each check's own SQL, for the fallback
    counted: list[Counted | None] = [None] * len(checks)
    runnable = []
    for i, c in enumerate(checks):
        missing = [t for t in (c.table, *c.needs) if t not in present]
        if missing:
            counted[i] = Counted(None, None, f"not applicable: table {missing[0]} does not exist")
        else:
            runnable.append(i)
    read = {t for i in runnable for t in (checks[i].table, *checks[i].needs)}
    read |= {b for i in runnable if (b := checks[i].base_table)}
    sizes = _row_counts(db, {t for t in read if t in present})
    unpopulated = _unpopulated(db, [checks[i] for i in runnable], sizes)
    checks = [_per_column(_fewer_joins(c, sizes, unpopulated)) for c in checks]
    by_source: dict[tuple[str, str | None, str], list[int]] = defaultdict(list)
    for i in runnable:
        c = checks[i]
        by_source[(c.source, c.grouped, _scan_kind(c))].append(i)
    types = column_types(db)
    with _threads(db) as use, _shared_joins(db, checks, list(by_source.values()), sizes, use) as checks:
        for group in by_source.values():
            use(sizes.get(checks[group[0]].table, 0))
            _count_group(db, checks, own, group, counted, sizes, types)
    return [c if c is not None else Counted(None, None, "not run") for c in counted]


_FROM_TABLE = re.compile(r"\bFROM (\w+)")


@contextmanager
def _shared_joins(
    db: HubDatabase,
    checks: list[Check],
    groups: list[list[int]],
    sizes: dict[str, int],
    use: Callable[[int], None],
) -> Iterator[list[Check]]:
    """``checks`` with each joined subquery that several queries read computed once, as a temp table.

    The person, death and visit joins, the observation-period spans and the keys of referenced
    tables are aggregates of a whole table; each table's queries joined them again (at 100,000
    persons: the visits grouped by id, 1.2 million groups, once per clinical table). DuckDB only
    (a temp table on a server database may need a privilege); dropped when done.
    """
    if getattr(db, "dialect", "duckdb") != "duckdb":
        yield checks
        return
    readers: dict[str, int] = defaultdict(int)
    for group in groups:
        base = checks[group[0]].base_table
        if base is None or sizes.get(base, 0) > 0:  # an empty table is not queried
            for join in {j for i in group for j in checks[i].joins}:
                readers[_SUBQUERY_JOIN.sub(r"\1", join)] += 1
    temps: dict[str, str] = {}
    try:
        for subquery, n in readers.items():
            if n < 2 or not subquery.startswith("SELECT "):
                continue
            name = f"hm_quality_join_{len(temps)}"
            use(max((sizes.get(t, 0) for t in _FROM_TABLE.findall(subquery)), default=0))
            try:
                db.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {subquery}")
            except CDMError:
                continue  # the queries keep their subquery (and report its error)
            temps[subquery] = name

        def materialized(text: str) -> str:
            match = _SUBQUERY_JOIN.fullmatch(text)
            if match is None or match.group(1) not in temps:
                return text
            return f"LEFT JOIN {temps[match.group(1)]} {match.group(2)} ON {match.group(3)}"

        def rewritten(c: Check) -> Check:
            if c.joins:
                return replace(c, joins=tuple(materialized(j) for j in c.joins))
            key = (c.table, c.field or "")
            if c.check == "isPrimaryKey" and _GROUPED_KEYS.get(key) in temps:
                # the rows per key of the person or visit grouping: the same keys held more than once
                duplicated = f'SELECT "{c.field}" FROM {temps[_GROUPED_KEYS[key]]} WHERE n > 1'
                return replace(c, violating=c.violating.replace(_primary_key_subquery(*key), duplicated))
            return c

        yield [rewritten(c) for c in checks]
    finally:
        for name in temps.values():
            db.execute(f"DROP TABLE IF EXISTS {name}")


# Below this many rows a query runs on one thread: DuckDB splits work by row groups of 122,880
# rows, and waking threads for a few of them cost more CPU than it saved (10,000-person sample:
# the whole run 0.74 s CPU with 2 threads, 0.58 s with 1, and less wall time on a busy machine).
_PARALLEL_ROWS = 1_000_000


@contextmanager
def _threads(db: HubDatabase) -> Iterator[Callable[[int], None]]:
    """``use(rows)`` sets DuckDB's threads for a query over ``rows``; the setting is restored after."""
    if getattr(db, "dialect", "duckdb") != "duckdb":  # a server database manages its own workers
        yield lambda rows: None
        return
    try:
        configured = int(db.scalar("SELECT current_setting('threads')"))
    except (CDMError, TypeError, ValueError):  # not DuckDB's setting: leave the engine alone
        yield lambda rows: None
        return
    current = configured

    def use(rows: int) -> None:
        nonlocal current
        wanted = configured if rows >= _PARALLEL_ROWS else 1
        if wanted != current:
            db.execute(f"SET threads = {wanted}")
            current = wanted

    try:
        yield use
    finally:
        if current != configured:
            db.execute(f"SET threads = {configured}")


def _count_group(
    db: HubDatabase,
    checks: list[Check],
    own: list[Check],
    group: list[int],
    counted: list[Counted | None],
    sizes: dict[str, int],
    types: dict[tuple[str, str], str],
) -> None:
    """Count the checks of one source and kind of scan (in batches of ``_BATCH``), into ``counted``."""
    base = checks[group[0]].base_table
    if base is not None and sizes.get(base) == 0:
        for i in group:  # an empty table has nothing to violate
            counted[i] = Counted(0, 0)
        return
    group = _skip_absent_concepts(db, checks, group, counted)
    count_if = getattr(db, "dialect", "duckdb") == "duckdb"
    for start in range(0, len(group), _BATCH):
        batch = group[start : start + _BATCH]
        began = time.perf_counter()
        try:
            sql, positions = _batch_sql([checks[i] for i in batch], types, count_if)
            row = db.rows(sql)[0]
        except CDMError:
            for i in batch:
                began = time.perf_counter()
                try:
                    v, d = db.rows(own[i].sql())[0]
                    counted[i] = Counted(int(v), int(d), None, time.perf_counter() - began)
                except CDMError as error:
                    counted[i] = Counted(None, None, str(error).splitlines()[0], time.perf_counter() - began)
            continue
        share = (time.perf_counter() - began) / len(batch)
        for (v, d), i in zip(positions, batch, strict=True):
            counted[i] = Counted(int(row[v]), int(row[d]), None, share)


def run_checks(db: HubDatabase, checks: list[Check], present: dict[str, set[str]]) -> list[CheckResult]:
    """Run ``checks`` (batched, see ``count_checks``) and judge each against its threshold."""
    return [
        _result(c, n.violating, n.denominator, n.error)
        for c, n in zip(checks, count_checks(db, checks, present), strict=True)
    ]


def _dqd_plan(present: dict[str, set[str]]) -> tuple[list[DqdResult], list[tuple[int, Check]]]:
    """DQD's checks: the structural ones answered from the catalog, the others as ``Check``s to count.

    Returns the results (counts still missing for the planned ones) and, for each planned check,
    its index in the results.
    """
    results: list[DqdResult] = []
    planned: list[tuple[int, Check]] = []
    for spec in dqd_checks():
        table, column = spec.table.lower(), (spec.field or "").lower()
        if spec.name == "cdmTable":
            sql = f"SELECT count(*) = 0 FROM information_schema.tables WHERE table_name = '{table}'"
            results.append(DqdResult(spec, sql, int(table not in present), 1))
        elif spec.name == "cdmField":
            sql = (
                "SELECT count(*) = 0 FROM information_schema.columns"
                f" WHERE table_name = '{table}' AND column_name = '{column}'"
            )
            results.append(DqdResult(spec, sql, int(column not in present.get(table, set())), 1))
        else:
            check = to_check(spec)
            if table not in present:
                results.append(
                    DqdResult(spec, check.sql(), None, None, f"Table {spec.table} does not exist.")
                )
            elif column and column not in present[table]:
                error = f"Field {spec.table}.{spec.field} does not exist."
                results.append(DqdResult(spec, check.sql(), None, None, error))
            else:
                planned.append((len(results), check))
                results.append(DqdResult(spec, check.sql(), None, None))
    return results, planned


def _cdm_source(db: HubDatabase, present: dict[str, set[str]]) -> list[dict[str, Any]]:
    """DQD's ``Metadata``: the CDM_SOURCE rows (upper-case keys) and the DQD version followed."""
    rows: list[dict[str, Any]] = []
    if "cdm_source" in present:
        frame = db.df("SELECT * FROM cdm_source")
        for record in frame.to_dict("records"):
            rows.append(
                {str(k).upper(): (None if v is None or v != v else str(v)) for k, v in record.items()}
            )
    return [{**row, "DQD_VERSION": DQD_VERSION} for row in rows or [{}]]


def run_quality(
    db: HubDatabase,
    out_dir: str | Path | None = None,
    thresholds: str | Path | Thresholds | None = None,
    release: Release | None = None,
    dqd_file: str | Path | None = None,
) -> QualityReport:
    """Run every check (ours and DQD's) on the hub; with ``out_dir`` write ``quality.json`` and ``.html``.

    The report keeps exact counts for the hub; ``release`` (the hub's) is needed to write or serve it.
    ``dqd_file`` writes DQD's result JSON with exact counts: the hub administrator's local file.
    """
    started = time.perf_counter()
    began = datetime.now()
    th = thresholds if isinstance(thresholds, Thresholds) else load_thresholds(thresholds)
    present = present_columns(db)
    ours = build_checks(db, th, present)
    dqd, planned = _dqd_plan(present)
    # One pass for both sets: checks of the same table and type share their scans.
    counted = count_checks(db, ours + [c for _, c in planned], present)
    results = _structural(present, th)
    results += [_result(c, n.violating, n.denominator, n.error) for c, n in zip(ours, counted, strict=False)]
    for (index, _), n in zip(planned, counted[len(ours) :], strict=True):
        error = n.error.removeprefix("not applicable: ") if n.error else None
        result = dqd[index]  # set in place: ``dataclasses.replace`` of 2,000 results cost 0.1 s
        result.violating, result.denominator, result.error, result.seconds = (
            n.violating,
            n.denominator,
            error,
            n.seconds,
        )
    evaluate(dqd)
    order = {name: i for i, name in enumerate(CHECK_TYPES)}
    results.sort(key=lambda r: (order[r.check], r.table, r.field or "", r.label or ""))
    report = QualityReport(
        results=results,
        duration_s=time.perf_counter() - started,
        release=release,
        dqd=dqd,
        dqd_checks={i: c for i, c in planned},
        dqd_started=began,
        dqd_metadata=_cdm_source(db, present),
    )
    if out_dir is not None:
        report.write(out_dir)
    if dqd_file is not None:
        report.write_dqd(dqd_file)
    return report
