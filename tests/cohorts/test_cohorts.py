"""Cohort definitions: validation at load, compilation to SQL, attrition on a hand-built CDM."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healthmesh.cdm import HubDatabase
from healthmesh.cli import app
from healthmesh.cohorts import build_cohort, builtin_cohorts, compile_cohort, load_cohort, to_dialect
from healthmesh.errors import CohortError

T2DM, CKD3 = 201826, 443597  # CKD stage 3 is a descendant of chronic kidney disease (46271022)


def _person(
    db: HubDatabase, pid: int, born: int, visits: list[date], conditions: list[tuple[int, date]]
) -> None:
    db.execute(
        "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, ethnicity_concept_id) "
        "VALUES (?, 8507, ?, 0, 0)",
        [pid, born],
    )
    db.execute(
        "INSERT INTO observation_period VALUES (?, ?, DATE '2010-01-01', DATE '2024-12-31', 32817)",
        [pid, pid],
    )
    for i, day in enumerate(visits):
        db.execute(
            "INSERT INTO visit_occurrence (visit_occurrence_id, person_id, visit_concept_id, visit_start_date, "
            "visit_end_date, visit_type_concept_id) VALUES (?, ?, 9202, ?, ?, 32817)",
            [pid * 100 + i, pid, day, day],
        )
    for i, (concept, day) in enumerate(conditions):
        db.execute(
            "INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id, "
            "condition_start_date, condition_type_concept_id) VALUES (?, ?, ?, ?, 32817)",
            [pid * 100 + i, pid, concept, day],
        )


@pytest.fixture
def small_hub(hub_db: HubDatabase) -> HubDatabase:
    _person(hub_db, 1, 1960, [date(2015, 3, 1), date(2016, 3, 1)], [])  # qualifies
    _person(hub_db, 2, 1960, [date(2015, 3, 1)], [(T2DM, date(2014, 1, 1))])  # prior diabetes
    _person(hub_db, 3, 1990, [date(2015, 3, 1)], [])  # too young
    _person(hub_db, 4, 1955, [date(2015, 3, 1), date(2017, 5, 5)], [(T2DM, date(2016, 2, 2))])  # later onset
    _person(hub_db, 5, 1950, [date(2010, 6, 1)], [(CKD3, date(2012, 1, 1))])  # too little prior obs
    return hub_db


def test_attrition_counts_each_rule(small_hub: HubDatabase) -> None:
    result = build_cohort(small_hub, load_cohort("adults-40-without-diabetes"))
    steps = {s["step"]: (s["events"], s["persons"]) for s in result.attrition}
    assert steps["entry events in an observation period"] == (7, 5)
    assert steps["365 days observed before, 0 after"] == (6, 4)
    assert steps["entry age 40-"] == (5, 3)
    assert steps["no diabetes on or before index"] == (3, 2)  # person 4's 2017 visit follows onset
    assert result.attrition[-1] == {"step": "first qualifying episode per person", "events": 2, "persons": 2}
    rows = small_hub.rows(f"SELECT subject_id, cohort_start_date FROM {result.table} ORDER BY 1")
    assert rows == [(1, date(2015, 3, 1)), (4, date(2015, 3, 1))]


def test_descendants_come_through_concept_ancestor(small_hub: HubDatabase) -> None:
    result = build_cohort(small_hub, load_cohort("chronic-kidney-disease"))
    assert small_hub.rows(f"SELECT subject_id, cohort_start_date FROM {result.table}") == [
        (5, date(2012, 1, 1))
    ]
    flat = json.loads(builtin_cohorts()["chronic-kidney-disease"].read_text())
    flat["concept_sets"]["ckd"] = [{"concept_id": 46271022}]  # the parent alone, no descendants
    assert build_cohort(small_hub, load_cohort(flat)).persons == 0


def test_washout_and_fixed_end(small_hub: HubDatabase) -> None:
    definition = {
        "name": "visits-with-washout",
        "entry": {"domain": "visit"},
        "washout_days": 500,
        "end": {"strategy": "fixed", "days": 30},
    }
    result = build_cohort(small_hub, load_cohort(definition))
    ends = small_hub.rows(
        f"SELECT subject_id, cohort_start_date, cohort_end_date FROM {result.table} WHERE subject_id = 1"
    )
    # Person 1's second visit is 366 days after the first: inside the washout, so it starts no episode.
    assert ends == [(1, date(2015, 3, 1), date(2015, 3, 31))]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"entry": {"domain": "condition", "concept_set": "nope"}}, "not defined"),
        ({"entry": {"domain": "lab"}}, "entry.domain"),
        ({"prior_observation_days": -1}, "prior_observation_days"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_definitions_are_explained(change: dict, message: str) -> None:
    document = json.loads(builtin_cohorts()["type-2-diabetes"].read_text()) | change
    with pytest.raises(CohortError, match=message):
        load_cohort(document)


def test_unknown_file_names_the_builtins(tmp_path: Path) -> None:
    with pytest.raises(CohortError, match="adults-40-without-diabetes"):
        load_cohort(tmp_path / "missing.json")


def test_sql_transpiles_to_postgres() -> None:
    steps = compile_cohort(load_cohort("diabetes-or-hypertension-without-ckd"), "hm_x")
    assert steps[-1][1] == "hm_x_cohort"
    for _, _, sql in steps:
        assert "QUALIFY" not in to_dialect(sql, "postgres").upper()


def test_cli_count_prints_attrition(small_hub: HubDatabase) -> None:
    path = small_hub.path
    small_hub.close()
    result = CliRunner().invoke(app, ["cohort", "count", "adults-40-without-diabetes", "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert "no diabetes on or before index" in result.output and "first qualifying" in result.output


def test_count_rule_needs_that_many_events(small_hub: HubDatabase) -> None:
    definition = {
        "name": "second-visit",
        "concept_sets": {"visit": [{"concept_id": 9202}]},
        "entry": {"domain": "visit", "concept_set": "visit"},
        "inclusion_rules": [
            {
                "name": "two visits so far",
                "domain": "visit",
                "concept_set": "visit",
                "min_count": 2,
                "max_count": 2,
            }
        ],
    }
    result = build_cohort(small_hub, load_cohort(definition))
    rows = small_hub.rows(f"SELECT subject_id, cohort_start_date FROM {result.table} ORDER BY 1")
    assert rows == [(1, date(2016, 3, 1)), (4, date(2017, 5, 5))]
