"""Quality, cohorts, task features and characterization run on PostgreSQL and agree with DuckDB."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import GeneratedPair

from healthmesh.cdm import HubDatabase
from healthmesh.characterize import characterize
from healthmesh.cohorts import build_cohort, builtin_cohorts, load_cohort
from healthmesh.privacy.release import Release
from healthmesh.quality import run_quality
from healthmesh.risk.tasks import builtin_tasks, load_task
from healthmesh.risk.train import task_data

pytestmark = pytest.mark.postgres


def _both(pair: GeneratedPair) -> tuple[HubDatabase, HubDatabase]:
    return pair.open("duckdb"), pair.open("postgres")


def test_quality_checks_give_the_same_results(generated_pair: GeneratedPair) -> None:
    duck, pg = _both(generated_pair)
    with duck, pg:
        results = {}
        for name, db in (("duckdb", duck), ("postgres", pg)):
            report = run_quality(db)
            results[name] = {
                (r.check, r.table, r.field, r.label): (r.violating_rows, r.denominator, r.status)
                for r in report.results
            }
    assert len(results["duckdb"]) > 1000
    assert not [k for k, v in results["postgres"].items() if v[2] == "error"]
    assert results["postgres"] == results["duckdb"]


def test_every_builtin_cohort_counts_the_same(generated_pair: GeneratedPair) -> None:
    duck, pg = _both(generated_pair)
    with duck, pg:
        for name in builtin_cohorts():
            definition = load_cohort(name)
            expected = build_cohort(duck, definition).attrition
            assert build_cohort(pg, definition).attrition == expected, name
        diabetes = build_cohort(pg, load_cohort("type-2-diabetes"))
        assert diabetes.attrition[-1]["persons"] > 0
        assert pg.scalar(f"SELECT count(*) FROM {diabetes.table}") == diabetes.attrition[-1]["events"]


@pytest.mark.parametrize("task_name", sorted(builtin_tasks()))
def test_task_rows_and_features_are_identical(generated_pair: GeneratedPair, task_name: str) -> None:
    task = load_task(task_name)
    duck, pg = _both(generated_pair)
    with duck, pg:
        expected = task_data(duck, task)
        got = task_data(pg, task)
    assert len(expected.rows) > 20 and expected.matrix.nnz > 0
    pd.testing.assert_frame_equal(got.rows, expected.rows)
    assert got.attrition == expected.attrition
    assert got.names == expected.names
    np.testing.assert_allclose(got.matrix.toarray(), expected.matrix.toarray())


def test_characterization_releases_the_same_document(generated_pair: GeneratedPair) -> None:
    duck, pg = _both(generated_pair)
    with duck, pg:
        release = Release(b"postgres-test-release-key-012345", 5)
        documents = [characterize(db, release=release, hub="gyeonggi", charts=False) for db in (duck, pg)]
    analyses = [[{k: v for k, v in a.items() if k != "seconds"} for a in d["analyses"]] for d in documents]
    assert len(analyses[0]) > 20
    for got, expected in zip(analyses[1], analyses[0], strict=True):
        assert {k: v for k, v in got.items() if k != "rows"} == {
            k: v for k, v in expected.items() if k != "rows"
        }
        for a, b in zip(got["rows"], expected["rows"], strict=True):
            # float sums run in another order: means may differ in the last published decimal
            assert a.keys() == b.keys()
            for key, value in b.items():
                if isinstance(value, float):
                    assert a[key] == pytest.approx(value, rel=1e-5, abs=1e-4), (got["analysis_id"], key, a, b)
                else:
                    assert a[key] == value, (got["analysis_id"], key, a, b)
