"""Characterization and catalog: the analyses, the charts, the ILI series and what may leave the hub."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from healthmesh.cdm import connect
from healthmesh.characterize import ANALYSES, build_catalog, characterize, ili_weekly
from healthmesh.cli import app
from healthmesh.privacy import COUNT_KEYS
from healthmesh.privacy.release import Release

RELEASE = Release(b"characterize-test-release-key-01", 5)

MAIN_ANALYSES = {1, 2, 3, 101, 103, 105, 108, 200, 220, 400, 501, 700, 1800, 1815, 2000, 9001}

# Ten ILI visits in one week for the Gwangju persons (location 1: person_id % 3 == 0).
ILI_OUTBREAK = """
INSERT INTO visit_occurrence (visit_occurrence_id, person_id, visit_concept_id, visit_start_date, visit_end_date,
    visit_type_concept_id)
SELECT person_id * 1000 + 500, person_id, 9203, DATE '2023-01-10', DATE '2023-01-10', 32817 FROM person
WHERE location_id = 1;
INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id, condition_start_date,
    condition_type_concept_id, visit_occurrence_id, condition_source_concept_id)
SELECT person_id * 1000 + 500, person_id, 2000000001, DATE '2023-01-10', 32817, person_id * 1000 + 500, 2000000001
FROM person WHERE location_id = 1;
"""


def _counts(document: object) -> list[int]:
    found: list[int] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key in COUNT_KEYS and isinstance(value, int):
                found.append(value)
            else:
                found += _counts(value)
    elif isinstance(document, list):
        for item in document:
            found += _counts(item)
    return found


def _recoverable_cells(analysis: dict) -> int:
    """Lines (cells sharing all strata but one) where exactly one cell is withheld: subtraction finds it."""
    rows, strata = analysis["rows"], analysis["strata"]
    recoverable = 0
    for dim in strata or [None]:
        others = [s for s in strata if s != dim]
        lines: dict[tuple, list[dict]] = {}
        for row in rows:
            lines.setdefault(tuple(row[s] for s in others), []).append(row)
        for cells in lines.values():
            hidden = [c for c in cells if c["suppressed"]]
            if len(hidden) == 1 and len(cells) > 1:
                recoverable += 1
    return recoverable


def test_characterization_runs_all_analyses_and_writes_charts(clean_cdm, tmp_path: Path) -> None:
    document = characterize(clean_cdm, tmp_path, release=RELEASE, hub="sample")
    ids = {a["analysis_id"] for a in document["analyses"]}
    assert len(ANALYSES) >= 30 and ids == {a.analysis_id for a in ANALYSES}
    assert MAIN_ANALYSES <= ids
    written = json.loads((tmp_path / "characterization.json").read_text())
    persons = clean_cdm.scalar("SELECT count(*) FROM person")
    assert abs(written["analyses"][0]["rows"][0]["count_value"] - persons) <= RELEASE.max_noise
    assert len(document["charts"]) >= 5
    for chart in document["charts"]:
        assert (tmp_path / chart).read_bytes()[:4] == b"\x89PNG"


def test_no_released_count_lies_between_one_and_the_minimum(clean_cdm, tmp_path: Path) -> None:
    for min_count in (5, 11):
        document = characterize(clean_cdm, tmp_path, release=Release(RELEASE.key, min_count), charts=False)
        counts = _counts(document)
        assert counts and not [n for n in counts if 0 < n < min_count]
        assert any(r["suppressed"] for a in document["analyses"] for r in a["rows"])


def test_suppressed_cells_cannot_be_recovered_from_margins(clean_cdm) -> None:
    # Three women among many men: the female count is withheld, and so must be the male count,
    # else total persons (analysis 1) minus men would give the women away.
    clean_cdm.execute("UPDATE person SET gender_concept_id = 8507 WHERE person_id > 3")
    document = characterize(clean_cdm, release=RELEASE, charts=False)
    by_id = {a["analysis_id"]: a for a in document["analyses"]}
    total = by_id[1]["rows"][0]["count_value"]
    published = [r["count_value"] for r in by_id[2]["rows"] if r["count_value"] is not None]
    assert abs(total - 30) <= 3 and not published  # an attacker's subtraction has nothing to work on
    for analysis in document["analyses"]:
        if analysis["kind"] == "count":
            assert _recoverable_cells(analysis) == 0, analysis["name"]


def test_quantiles_over_few_persons_are_withheld(clean_cdm) -> None:
    document = characterize(clean_cdm, release=RELEASE, charts=False)
    deaths = next(a for a in document["analyses"] if a["analysis_id"] == 506)  # three deaths in the sample
    assert deaths["rows"][0]["median"] is None and deaths["rows"][0]["n_persons"] is None
    sbp = next(
        r
        for a in document["analyses"]
        if a["analysis_id"] == 1815
        for r in a["rows"]
        if r["concept_id"] == 3004249
    )
    values = clean_cdm.df("SELECT value_as_number FROM measurement WHERE measurement_concept_id = 3004249")
    np.testing.assert_allclose(sbp["median"], values["value_as_number"].median())


def test_ili_series_by_region_and_week(clean_cdm) -> None:
    for statement in ILI_OUTBREAK.strip().split(";"):
        if statement.strip():
            clean_cdm.execute(statement)
    series = ili_weekly(clean_cdm, RELEASE)
    assert list(series.columns) == ["unique_id", "ds", "y"]
    week = series[(series["unique_id"] == "KR-29") & (series["ds"] == "2023-01-09")]
    outbreak = clean_cdm.scalar("SELECT count(*) FROM person WHERE location_id = 1")
    assert len(week) == 1 and abs(week["y"].iloc[0] - outbreak) <= RELEASE.max_noise
    assert series["y"].isna().any()  # single ILI visits elsewhere are withheld
    assert set(series["unique_id"]) == {"KR-26", "KR-29", "KR-41"}


def test_catalog_holds_only_suppressed_aggregates(clean_cdm, tmp_path: Path) -> None:
    entry = build_catalog(clean_cdm, "sample", tmp_path, release=RELEASE)
    written = json.loads((tmp_path / "catalog.json").read_text())
    assert written["hub"] == "sample" and written["cdm_version"] == "5.4"
    assert abs(written["person_count"] - 30) <= RELEASE.max_noise
    assert {d["table"] for d in written["domains"]} >= {"person", "measurement", "death"}
    death = next(d for d in written["domains"] if d["table"] == "death")
    assert death["record_count"] is None  # three deaths: withheld
    assert written["quality"]["pct_passed"] == 100.0
    assert written["dct:temporal"] == {"start_month": "2015-01", "end_month": "2024-12"}
    assert not [n for n in _counts(entry) if 0 < n < 5]


def test_characterization_and_catalog_on_the_shared_synthea_cdm(eunomia_file: Path, tmp_path: Path) -> None:
    with connect(eunomia_file, read_only=True) as db:
        document = characterize(db, tmp_path, release=RELEASE, hub="eunomia")
        entry = build_catalog(db, "eunomia", tmp_path, release=RELEASE, characterization=document)
    assert len(document["analyses"]) >= 30
    assert abs(entry["person_count"] - 28) <= RELEASE.max_noise
    assert not [n for n in _counts(document) + _counts(entry) if 0 < n < 5]
    conditions = next(a for a in document["analyses"] if a["analysis_id"] == 400)
    assert any(r["prevalence"] and r["prevalence"] > 0.5 for r in conditions["rows"])


def test_cli_characterize_and_catalog(clean_cdm_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["characterize", "--db", str(clean_cdm_file), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["catalog", "--db", str(clean_cdm_file), "--hub", "gwangju", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "catalog.json").read_text())["hub"] == "gwangju"
    result = runner.invoke(app, ["characterize", "--db", str(clean_cdm_file), "--min-count", "0"])
    assert result.exit_code != 0


def test_characterization_of_a_generated_hub(generated_hub: Path, tmp_path: Path) -> None:
    with connect(generated_hub, read_only=True) as db:
        document = characterize(db, tmp_path, release=RELEASE, hub="gyeonggi")
        series = ili_weekly(db, RELEASE)
        ili = db.scalar("SELECT count(*) FROM condition_occurrence WHERE condition_concept_id = 2000000001")
    assert not [n for n in _counts(document) if 0 < n < 5]
    assert ili > 0 and set(series["unique_id"]) == {"KR-41"}
    assert series["y"].notna().any()  # the seasonal peaks are large enough to publish
    assert series["y"].sum() <= ili + RELEASE.max_noise * series["y"].notna().sum()


def test_a_set_of_persons_shows_the_same_noise_in_every_publication(generated_hub: Path) -> None:
    """Persons are perturbed by their set's key: a second channel is not a second draw."""
    with connect(generated_hub, read_only=True) as db:
        document = characterize(db, release=RELEASE, charts=False)
        entry = build_catalog(db, "gyeonggi", release=RELEASE, characterization=document)
        everyone = db.df("SELECT person_id, gender_concept_id FROM person")
        visited = db.df("SELECT DISTINCT person_id FROM visit_occurrence")["person_id"]
    by_id = {a["analysis_id"]: a["rows"] for a in document["analyses"]}
    expected = RELEASE.count(len(everyone), RELEASE.person_key(everyone["person_id"]))
    assert by_id[1][0]["count_value"] == entry["person_count"] == expected
    women = everyone.loc[everyone["gender_concept_id"] == 8532, "person_id"]
    shown = next(r["count_value"] for r in by_id[2] if r["gender_concept_id"] == 8532)
    assert shown == RELEASE.count(len(women), RELEASE.person_key(women))
    visits = next(d["person_count"] for d in entry["domains"] if d["table"] == "visit_occurrence")
    assert visits == next(r["count_value"] for r in by_id[2001] if r["domain"] == "visit")
    assert visits == RELEASE.count(len(visited), RELEASE.person_key(visited))
    assert not [k for rows in by_id.values() for r in rows for k in r if k.endswith("_key")]  # no key leaves
