"""Stage a Synthea CSV export folder into ``hm_stage``: the same staging shape as FHIR, so the
same mapping (``map.py``) loads it.

Rows without an ``Id`` column get a deterministic id from a hash of the whole row, so loading the
same folder twice changes nothing. Direct identifiers (names, SSN, driver's licence, passport,
street address, coordinates) are never selected.
"""

from __future__ import annotations

from pathlib import Path

from healthmesh.cdm.database import HubDatabase

__all__ = ["SYNTHEA_TABLES", "is_synthea_csv_dir", "stage_synthea_csv"]

_ROW_ID = "md5(concat_ws('|', *COLUMNS(*)))"

# file -> (resource type, SELECT list in hm_stage columns). Columns missing from a file stay NULL.
SYNTHEA_TABLES: dict[str, tuple[str, str]] = {
    "organizations": (
        "Organization",
        "Id AS rid, NAME AS org_name, STATE AS addr_state, CITY AS addr_city, ZIP AS addr_postal",
    ),
    "providers": (
        "Practitioner",
        "Id AS rid, CASE GENDER WHEN 'M' THEN 'male' WHEN 'F' THEN 'female' END AS gender",
    ),
    "patients": (
        "Patient",
        """Id AS rid, BIRTHDATE AS birth_raw, nullif(DEATHDATE, '') AS deceased_raw,
           CASE GENDER WHEN 'M' THEN 'male' WHEN 'F' THEN 'female' ELSE GENDER END AS gender,
           CASE lower(RACE) WHEN 'white' THEN '2106-3' WHEN 'black' THEN '2054-5' WHEN 'asian' THEN '2028-9'
                WHEN 'native' THEN '1002-5' WHEN 'hawaiian' THEN '2076-8' END AS race,
           STATE AS addr_state, CITY AS addr_city, ZIP AS addr_postal""",
    ),
    "encounters": (
        "Encounter",
        """Id AS rid, PATIENT AS subject_ref, PROVIDER AS provider_ref, ORGANIZATION AS care_site_ref,
           'SNOMED' AS code_system, CODE AS code, DESCRIPTION AS code_display, START AS start_raw,
           nullif(STOP, '') AS end_raw, 'START' AS start_field,
           CASE lower(ENCOUNTERCLASS) WHEN 'inpatient' THEN 'IMP' WHEN 'emergency' THEN 'EMER' ELSE 'AMB' END
           AS visit_class""",
    ),
    "conditions": (
        "Condition",
        f"""{_ROW_ID} AS rid, PATIENT AS subject_ref, ENCOUNTER AS visit_ref, 'SNOMED' AS code_system, CODE AS code,
           DESCRIPTION AS code_display, START AS start_raw, nullif(STOP, '') AS end_raw, 'START' AS start_field""",
    ),
    "observations": (
        "Observation",
        f"""{_ROW_ID} AS rid, PATIENT AS subject_ref, ENCOUNTER AS visit_ref, 'LOINC' AS code_system, CODE AS code,
           DESCRIPTION AS code_display, DATE AS start_raw, 'DATE' AS start_field, CATEGORY AS category,
           CASE WHEN TYPE = 'numeric' THEN VALUE END AS value_num_raw, nullif(UNITS, '') AS value_unit,
           CASE WHEN TYPE <> 'numeric' THEN VALUE END AS value_string""",
    ),
    "medications": (
        "MedicationRequest",
        f"""{_ROW_ID} AS rid, PATIENT AS subject_ref, ENCOUNTER AS visit_ref, 'RxNorm' AS code_system, CODE AS code,
           DESCRIPTION AS code_display, START AS start_raw, nullif(STOP, '') AS end_raw, 'START' AS start_field""",
    ),
    "immunizations": (
        "Immunization",
        f"""{_ROW_ID} AS rid, PATIENT AS subject_ref, ENCOUNTER AS visit_ref, 'CVX' AS code_system, CODE AS code,
           DESCRIPTION AS code_display, DATE AS start_raw, 'DATE' AS start_field""",
    ),
    "procedures": (
        "Procedure",
        f"""{_ROW_ID} AS rid, PATIENT AS subject_ref, ENCOUNTER AS visit_ref, 'SNOMED' AS code_system, CODE AS code,
           DESCRIPTION AS code_display, START AS start_raw, nullif(STOP, '') AS end_raw, 'START' AS start_field""",
    ),
    "allergies": (
        "AllergyIntolerance",
        f"""{_ROW_ID} AS rid, PATIENT AS subject_ref, ENCOUNTER AS visit_ref, coalesce(SYSTEM, 'SNOMED') AS code_system,
           CODE AS code, DESCRIPTION AS code_display, START AS start_raw, nullif(STOP, '') AS end_raw,
           'START' AS start_field""",
    ),
    "devices": (
        "Device",
        f"""{_ROW_ID} AS rid, PATIENT AS subject_ref, ENCOUNTER AS visit_ref, 'SNOMED' AS code_system, CODE AS code,
           DESCRIPTION AS code_display, START AS start_raw, nullif(STOP, '') AS end_raw, 'START' AS start_field""",
    ),
}

# Synthea tables with no clinical home in the CDM; their rows are counted as skipped.
_SKIPPED = {
    "claims": "Claim",
    "claims_transactions": "Claim",
    "payers": "Organization(payer)",
    "payer_transitions": "Coverage",
    "careplans": "CarePlan",
    "imaging_studies": "ImagingStudy",
    "supplies": "SupplyDelivery",
}


def is_synthea_csv_dir(path: Path) -> bool:
    return path.is_dir() and any(
        p.name.lower() in ("patients.csv", "patients.csv.gz") for p in path.iterdir()
    )


def _files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in directory.iterdir():
        name = p.name.lower()
        for suffix in (".csv.gz", ".csv"):
            if name.endswith(suffix):
                found[name[: -len(suffix)]] = p
    return found


def stage_synthea_csv(db: HubDatabase, directory: Path) -> list[tuple[str, str, int]]:
    """Stage every known table; returns (file, resource type, rows) for the skipped tables."""
    files = _files(directory)
    staged = sorted(str(files[name]) for name in SYNTHEA_TABLES if name in files)
    for number, file in enumerate(staged, start=1):  # numbered in name order, as the dedupe expects
        db.execute("INSERT INTO hm_files VALUES (?, ?)", [number, file])
    for name, (resource_type, select) in SYNTHEA_TABLES.items():
        path = files.get(name)
        if path is None:
            continue
        source = f"read_csv('{path}', header=true, all_varchar=true)"
        db.execute(
            f"""
            INSERT INTO hm_stage BY NAME
            SELECT {staged.index(str(path)) + 1} AS file_no, row_number() OVER () + 1 AS rec, NULL::BIGINT AS entry,
                   '{resource_type}' AS resource_type, * EXCLUDE (rn)
            FROM (SELECT {select}, row_number() OVER () AS rn FROM {source})
            """
        )
    skipped = []
    for name, resource_type in _SKIPPED.items():
        path = files.get(name)
        if path is not None:
            rows = int(db.scalar(f"SELECT count(*) FROM read_csv('{path}', header=true, all_varchar=true)"))
            skipped.append((str(path), resource_type, rows))
    return skipped
