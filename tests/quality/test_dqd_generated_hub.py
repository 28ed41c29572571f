"""DQD's verdicts on a generated hub: no check fails (issue 12: a CDM that passes DQD)."""

from __future__ import annotations

from pathlib import Path

from healthmesh.cdm import connect
from healthmesh.quality import run_quality


def test_dqd_fails_no_check_on_a_generated_hub(generated_hub: Path) -> None:
    with connect(generated_hub, read_only=True) as db:
        report = run_quality(db)
    verdicts = {
        (r.spec.name, r.spec.table, r.spec.field): r.status for r in report.dqd if not r.spec.concept_id
    }
    failing = [(r.spec.name, r.spec.table, r.spec.field, r.spec.concept_id, r.violating, r.denominator)
               for r in report.dqd if r.status in ("FAIL", "ERROR")]  # fmt: skip
    assert len(report.dqd) == 2374
    assert failing == []
    # The three that failed before: procedures written, drug eras built, eGFR a standard concept.
    assert verdicts[("measurePersonCompleteness", "PROCEDURE_OCCURRENCE", None)] == "PASS"
    assert verdicts[("measurePersonCompleteness", "DRUG_ERA", None)] == "PASS"
    assert verdicts[("standardConceptRecordCompleteness", "MEASUREMENT", "MEASUREMENT_CONCEPT_ID")] == "PASS"
