"""The generator writes codes the bundled vocabulary maps to standard concepts, procedures included."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from healthmesh.cdm.database import HubDatabase
from healthmesh.ingest.synth import generate_population

_SYSTEMS = {"http://loinc.org": "LOINC", "http://snomed.info/sct": "SNOMED",
            "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm"}  # fmt: skip


def _codes(folder: Path) -> Counter[tuple[str, str, str]]:
    """(resource type, vocabulary, code) of every coded resource, counted."""
    found: Counter[tuple[str, str, str]] = Counter()
    for path in folder.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
            for coding in concept.get("coding", [])[:1]:
                if coding["system"] in _SYSTEMS:
                    found[(resource["resourceType"], _SYSTEMS[coding["system"]], coding["code"])] += 1
    return found


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.glob("*.ndjson")))).hexdigest()


def test_generated_codes_map_to_standard_concepts_of_their_domain(
    hub_db: HubDatabase, tmp_path: Path
) -> None:
    counts = generate_population("gyeonggi", 120, 1, tmp_path / "a")
    codes = _codes(tmp_path / "a")
    procedures = {code for (kind, _, code) in codes if kind == "Procedure"}
    assert counts["Procedure"] > 0 and len(procedures) >= 2
    assert counts["Procedure"] <= 3 * 120  # a few per person, not a flood
    expected_domain = {"Procedure": "Procedure", "MedicationRequest": "Drug", "Condition": "Condition"}
    for (kind, vocabulary, code), _ in codes.items():
        row = hub_db.rows(
            "SELECT m.concept_id, c.standard_concept, c.domain_id FROM hm_concept_map m"
            " JOIN concept c ON c.concept_id = m.concept_id WHERE m.vocabulary_id = ? AND m.concept_code = ?",
            [vocabulary, code],
        )
        assert row and row[0][1] == "S", (kind, vocabulary, code)
        if kind in expected_domain:
            assert row[0][2] == expected_domain[kind], (kind, code, row)
    egfr = {
        code for (kind, vocabulary, code) in codes if kind == "Observation" and code in ("33914-3", "77147-7")
    }
    assert egfr == {"77147-7"}  # the standard LOINC; 33914-3 is not standard in OMOP


def test_the_same_seed_gives_the_same_files(tmp_path: Path) -> None:
    generate_population("busan", 40, 7, tmp_path / "a")
    generate_population("busan", 40, 7, tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert any(p.name.startswith("Procedure.") for p in (tmp_path / "a").iterdir())
