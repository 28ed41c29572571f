"""The batched run's own ways of counting give the counts of the plain formulations they replace.

``withinObservationPeriod`` joins each row to the disjoint spans of its person's observation
periods (instead of a correlated ``NOT EXISTS`` per row); foreign keys join the referenced key
(instead of ``NOT IN``), the person and visit joins answer keys to PERSON and VISIT_OCCURRENCE,
and a key of an empty table needs no join. Each is compared here with the plain SQL on a CDM
whose observation periods have gaps, overlaps, duplicates, reversed dates and touching ends.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from healthmesh.cdm import cdm_tables, connect
from healthmesh.quality import run_quality

_PERIOD = "INSERT INTO observation_period VALUES"
FAULTS = (
    "DELETE FROM observation_period WHERE person_id % 7 <> 0",
    # two periods with a gap in 2019
    f"{_PERIOD} (101, 1, DATE '2015-01-01', DATE '2018-12-31', 32817),"
    " (102, 1, DATE '2020-01-01', DATE '2024-12-31', 32817),"
    " (108, 8, DATE '2015-01-01', DATE '2018-12-31', 32817), (109, 8, DATE '2020-01-01', DATE '2024-12-31', 32817)",
    # overlapping and nested periods, nothing after 2022
    f"{_PERIOD} (201, 2, DATE '2015-01-01', DATE '2020-06-30', 32817),"
    " (202, 2, DATE '2019-01-01', DATE '2022-12-31', 32817), (203, 2, DATE '2020-01-01', DATE '2020-03-01', 32817),"
    " (209, 9, DATE '2019-01-01', DATE '2022-12-31', 32817), (210, 9, DATE '2015-01-01', DATE '2020-06-30', 32817)",
    # a period that ends before it starts covers no day
    f"{_PERIOD} (301, 3, DATE '2024-12-31', DATE '2015-01-01', 32817), (310, 10, DATE '2024-12-31', DATE '2015-01-01', 32817)",
    # persons 4 and 11: no period; persons 5 and 12: the same period twice
    f"{_PERIOD} (501, 5, DATE '2017-01-01', DATE '2021-12-31', 32817), (502, 5, DATE '2017-01-01', DATE '2021-12-31', 32817),"
    " (512, 12, DATE '2017-01-01', DATE '2021-12-31', 32817), (513, 12, DATE '2017-01-01', DATE '2021-12-31', 32817)",
    # back to back, and touching on one day
    f"{_PERIOD} (601, 6, DATE '2015-01-01', DATE '2019-12-31', 32817), (602, 6, DATE '2020-01-01', DATE '2020-12-31', 32817),"
    " (603, 6, DATE '2020-12-31', DATE '2022-06-30', 32817), (613, 13, DATE '2020-12-31', DATE '2022-06-30', 32817),"
    " (614, 13, DATE '2015-01-01', DATE '2019-12-31', 32817)",
    # the rest of the persons over 13: one period, as before
    "INSERT INTO observation_period SELECT 1000 + person_id, person_id, DATE '2015-01-01', DATE '2024-12-31', 32817"
    " FROM person WHERE person_id > 13 AND person_id % 7 <> 0",
    # records on the edges of the spans
    "UPDATE measurement SET measurement_date = DATE '2018-12-31' WHERE person_id IN (1, 8) AND measurement_id % 5 = 0",
    "UPDATE measurement SET measurement_date = DATE '2019-01-01' WHERE person_id IN (1, 8) AND measurement_id % 5 = 1",
    "UPDATE measurement SET measurement_date = DATE '2020-01-01' WHERE person_id IN (1, 6, 8) AND measurement_id % 5 = 2",
    "UPDATE measurement SET measurement_date = DATE '2022-07-01' WHERE person_id IN (6, 13) AND measurement_id % 5 = 3",
    "UPDATE condition_occurrence SET condition_start_date = DATE '2022-06-30' WHERE person_id IN (6, 13)",
    # records of an unknown person, an unknown visit, a provider of an empty PROVIDER table
    "UPDATE measurement SET person_id = 99999 WHERE measurement_id % 17 = 0",
    "UPDATE drug_exposure SET visit_occurrence_id = 987654321 WHERE drug_exposure_id % 3 = 0",
    "UPDATE measurement SET provider_id = 5 WHERE measurement_id % 11 = 0",
    "UPDATE visit_occurrence SET preceding_visit_occurrence_id = visit_occurrence_id + 1",
    # duplicated keys of the tables whose key grouping the date checks read
    "INSERT INTO visit_occurrence SELECT * FROM visit_occurrence WHERE person_id IN (2, 3)",
    "INSERT INTO person SELECT * FROM person WHERE person_id = 5",
)


@pytest.fixture(scope="module")
def faulty(clean_cdm_file: Path, tmp_path_factory: pytest.TempPathFactory):
    """The sample CDM with the faults above and its quality report, built once (the tests only read)."""
    target = tmp_path_factory.mktemp("faulty") / "hub.duckdb"
    shutil.copy(clean_cdm_file, target)
    db = connect(target)
    for statement in FAULTS:
        db.execute(statement)
    yield db, run_quality(db)
    db.close()


def _within_observation_period_plainly(table: str, date: str) -> str:
    """Our check as it was first written: a correlated NOT EXISTS per row."""
    in_denominator = f"t.{date} IS NOT NULL AND p.person_id IS NOT NULL"
    return (
        "SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM observation_period op"
        f" WHERE op.person_id = t.person_id AND t.{date} BETWEEN op.observation_period_start_date"
        f" AND op.observation_period_end_date) AND {in_denominator}), count(*) FILTER (WHERE {in_denominator})"
        f" FROM {table} t LEFT JOIN (SELECT DISTINCT person_id FROM person) p ON p.person_id = t.person_id"
    )


def test_within_observation_period_counts_as_not_exists_does(faulty) -> None:
    db, report = faulty
    checked = [r for r in report.results if r.check == "withinObservationPeriod"]
    assert {r.table for r in checked} >= {
        "measurement",
        "visit_occurrence",
        "condition_occurrence",
        "drug_exposure",
    }
    for r in checked:
        plain = db.rows(_within_observation_period_plainly(r.table, r.field))[0]
        assert (r.violating_rows, r.denominator) == tuple(plain), r.table
    measurement = next(r for r in checked if r.table == "measurement")
    assert 0 < measurement.violating_rows < measurement.denominator  # the faults show, not everything fails


def test_foreign_keys_count_as_not_in_does(faulty) -> None:
    db, report = faulty
    fields = {(t, f.name): f.foreign_table for t, fs in cdm_tables().items() for f in fs}
    keys = {t: f.name for t, fs in cdm_tables().items() for f in fs if f.primary_key}
    ours = [r for r in report.results if r.check == "isForeignKey" and r.error is None]
    dqd = {
        (r.spec.table.lower(), r.spec.field.lower()): r for r in report.dqd if r.spec.name == "isForeignKey"
    }
    assert len(ours) > 20
    for r in ours:
        ref = fields[(r.table, r.field)]
        key = keys[str(ref)]
        plain = db.rows(
            f'SELECT count(*) FILTER (WHERE "{r.field}" IS NOT NULL AND "{r.field}" NOT IN'
            f" (SELECT {key} FROM {ref} WHERE {key} IS NOT NULL)), count(*) FROM {r.table}"
        )[0]
        assert (r.violating_rows, r.denominator) == tuple(plain), (r.table, r.field)
        assert (dqd[(r.table, r.field)].violating, dqd[(r.table, r.field)].denominator) == tuple(plain)
    by_field = {(r.table, r.field): r.violating_rows for r in ours}
    assert by_field[("measurement", "person_id")] == db.scalar(
        "SELECT count(*) FROM measurement WHERE person_id = 99999"
    )
    assert by_field[("measurement", "provider_id")] > 0  # PROVIDER is empty: every provider is unknown
    assert by_field[("drug_exposure", "visit_occurrence_id")] > 0
    assert by_field[("visit_occurrence", "preceding_visit_occurrence_id")] > 0


def test_primary_keys_count_as_their_own_query_does(faulty) -> None:
    """Keys of PERSON and VISIT_OCCURRENCE are counted from the person and visit groupings."""
    db, report = faulty
    ours = {r.table: r for r in report.results if r.check == "isPrimaryKey"}
    dqd = {r.spec.table.lower(): r for r in report.dqd if r.spec.name == "isPrimaryKey"}
    for table, duplicated in (("visit_occurrence", "person_id IN (2, 3)"), ("person", "person_id = 5")):
        expected = db.scalar(f"SELECT count(*) FROM {table} WHERE {duplicated}")
        assert expected > 0
        assert (ours[table].violating_rows, dqd[table].violating) == (expected, expected)
        assert tuple(db.rows(ours[table].sql)[0]) == (expected, db.scalar(f"SELECT count(*) FROM {table}"))


def test_every_batched_join_count_is_the_checks_own_query(faulty) -> None:
    """The checks that join (the joins shared, rewritten or computed once): their own SQL agrees."""
    db, report = faulty
    own = [(r.sql, r.violating, r.denominator) for r in report.dqd if r.error is None]
    own += [(r.sql, r.violating_rows, r.denominator) for r in report.results if r.error is None]
    own = [o for o in own if " JOIN " in o[0]]
    assert len(own) > 400
    for sql, violating, denominator in own:
        assert tuple(db.rows(sql)[0]) == (violating, denominator), sql
