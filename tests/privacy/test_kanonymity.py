"""k-anonymity, l-diversity and generalisation of extracts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from healthmesh.cli import app
from healthmesh.errors import PrivacyError
from healthmesh.privacy import anonymize, person_extract, risk_report


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31, 33, 34, 36, 38, 52, 55, 57, 71, 90],
            "sex": ["F", "F", "F", "M", "M", "M", "F", "M", "F", "M"],
            "region": [
                "KR-29",
                "KR-29",
                "KR-46",
                "KR-29",
                "KR-45",
                "KR-26",
                "KR-26",
                "KR-48",
                "KR-41",
                "KR-11",
            ],
            "diagnosis": ["a", "b", "a", "c", "a", "b", "b", "c", "a", "a"],
        }
    )


def test_risk_report_of_a_raw_extract() -> None:
    frame = _frame().assign(age=lambda f: (f["age"] // 10 * 10).astype(str))
    report = risk_report(frame, ["age"], "diagnosis", k_target=3)
    # age classes: 30s (5 records, diagnoses a,b,c), 50s (3: b,c), 70s (1), 90s (1)
    assert (report.k, report.classes, report.l_diversity) == (1, 4, 1)
    assert report.at_risk_share == pytest.approx(2 / 10)


def test_anonymize_reaches_k_with_least_generalisation() -> None:
    released, report = anonymize(_frame(), ["age", "sex", "region"], k=2, max_suppression=0.2)
    assert report.k >= 2 and report.at_risk_share == 0.0
    assert report.suppressed_records <= 2 and len(released) == 10 - report.suppressed_records
    assert released.groupby(["age", "sex", "region"]).size().min() >= 2
    assert set(report.levels) == {"age", "sex", "region"}


def test_l_diversity_is_enforced() -> None:
    released, report = anonymize(
        _frame(), ["age", "region"], k=2, sensitive="diagnosis", l_diversity=2, max_suppression=0.3
    )
    assert report.l_diversity is not None and report.l_diversity >= 2
    assert released.groupby(["age", "region"])["diagnosis"].nunique().min() >= 2


def test_impossible_requests_say_why() -> None:
    with pytest.raises(PrivacyError, match="fewer than k"):
        anonymize(_frame(), ["age"], k=11)
    with pytest.raises(PrivacyError, match="not in the extract"):
        risk_report(_frame(), ["zipcode"])


def test_person_extract_and_cli(clean_cdm, clean_cdm_file: Path, tmp_path: Path) -> None:
    extract = person_extract(clean_cdm)
    assert len(extract) == 30 and {"age", "sex", "region", "diagnosis"} <= set(extract.columns)
    out = tmp_path / "extract.csv"
    result = CliRunner().invoke(
        app,
        [
            "privacy",
            "check",
            "--db",
            str(clean_cdm_file),
            "--qi",
            "age,sex,region",
            "--k",
            "5",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    released = pd.read_csv(out, dtype=str)
    assert released.groupby(["age", "sex", "region"]).size().min() >= 5
