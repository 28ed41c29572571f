"""Identifier scan: each entity type found, checksums respected, clinical text left alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healthmesh.cdm import connect
from healthmesh.cli import app
from healthmesh.privacy import scan_database, scan_file, scan_text
from healthmesh.privacy.scan import kr_rrn_valid


def _rrn(front: str, back12: str) -> str:
    """A resident registration number with its mod-11 check digit."""
    digits = front + back12
    total = sum(int(d) * w for d, w in zip(digits, (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5), strict=True))
    return f"{front}-{back12}{(11 - total % 11) % 10}"


def _entities(text: str) -> list[str]:
    return sorted(f.entity for f in scan_text(text))


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("mail kim.minjun@example.co.kr please", "EMAIL"),
        ("call 010-2345-6789", "PHONE"),
        ("office 02-123-4567", "PHONE"),
        ("home (555) 123-4567", "PHONE"),
        ("ssn 123-45-6789", "US_SSN"),
        ("card 4111 1111 1111 1111", "CREDIT_CARD"),
        ("lives at 12 Main Street", "STREET_ADDRESS"),
        ("서울 중구 세종대로 110", "STREET_ADDRESS"),
        ("seen by Dr. Hong", "PERSON_NAME"),
        ("patient James Smith arrived", "PERSON_NAME"),
        ("Bernard308 Carter549", "PERSON_NAME"),
    ],
)
def test_each_entity_is_found(text: str, entity: str) -> None:
    assert entity in _entities(text)


def test_korean_rrn_checksum_and_date() -> None:
    valid = _rrn("850315", "123456")
    assert kr_rrn_valid(valid[:6], valid[7:])
    wrong_digit = valid[:-1] + str((int(valid[-1]) + 1) % 10)
    assert [f.confidence for f in scan_text(f"id {valid}")] == ["high"]
    assert [f.confidence for f in scan_text(f"id {wrong_digit}")] == ["medium"]  # post-2020 numbers lack it
    assert scan_text("id 851315-1234567") == []  # month 13
    assert scan_text("id " + wrong_digit.replace("-", "")) == []  # 13 digits without hyphen need the checksum


def test_invalid_ssn_and_card_numbers_are_ignored() -> None:
    assert _entities("000-12-3456 666-12-3456 123-00-4567") == []
    assert _entities("card 4111 1111 1111 1112") == []


@pytest.mark.parametrize(
    "text",
    [
        "Type 2 diabetes mellitus",
        "Essential hypertension",
        "Grace Period",
        "8480-6",
        "2024-01-31",
        "HM-ILI",
        "Hemoglobin A1c/Hemoglobin.total in Blood",
        "value 12.5 mg/dL",
    ],
)
def test_clinical_text_is_not_flagged(text: str) -> None:
    assert _entities(text) == []


def test_findings_are_masked(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    export.write_text("id,contact\n1,kim.minjun@example.co.kr\n2,none\n", encoding="utf-8")
    report = scan_file(export)
    text = json.dumps(report.to_dict())
    assert report.total == 1 and "kim.minjun" not in text and "EMAIL" in text


def test_database_scan_finds_injected_identifiers(clean_cdm, clean_cdm_file: Path) -> None:
    assert scan_database(clean_cdm).total == 0
    clean_cdm.execute("UPDATE person SET person_source_value = 'tel 010-2345-6789' WHERE person_id = 1")
    clean_cdm.execute(
        "INSERT INTO note (note_id, person_id, note_date, note_type_concept_id, note_class_concept_id, note_text,"
        " encoding_concept_id, language_concept_id) VALUES (1, 2, DATE '2020-01-01', 32817, 0,"
        f" 'Patient James Smith, RRN {_rrn('900101', '234567')}', 0, 0)"
    )
    report = scan_database(clean_cdm).to_dict()
    matches = {loc["location"]: loc["matches"] for loc in report["locations"]}
    assert matches == {
        "person.person_source_value": {"PHONE": 1},
        "note.note_text": {"KR_RRN": 1, "PERSON_NAME": 1},
    }
    result = CliRunner().invoke(app, ["privacy", "scan", "--db", str(clean_cdm_file)])
    assert result.exit_code == 0, result.output  # the clean sample has none


def test_scan_of_the_shared_synthea_cdm_finds_provider_names(eunomia_file: Path) -> None:
    with connect(eunomia_file, read_only=True) as db:
        report = scan_database(db).to_dict()
        providers = db.scalar("SELECT count(*) FROM provider")
    locations = {loc["location"]: loc["matches"] for loc in report["locations"]}
    assert locations["provider.provider_name"]["PERSON_NAME"] == providers
