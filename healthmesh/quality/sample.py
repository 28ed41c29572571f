"""A small, internally consistent sample population, written with set-based SQL.

It is what the quality checks call clean: every event lies inside its person's observation period
and visit, after birth and before death, with standard concepts of the right domain. Tests inject
one fault into it; the benchmark scales it to 100,000 persons when no generated hub is given.
Three regions as in the founding network: KR-29 Gwangju, KR-41 Gyeonggi, KR-26 Busan.
"""

from __future__ import annotations

from pathlib import Path

from healthmesh.cdm import cdm_tables, sql_type
from healthmesh.cdm.database import HubDatabase
from healthmesh.cdm.vocabulary import VOCABULARY_TABLES
from healthmesh.errors import QualityError

__all__ = ["insert_sample_population", "load_cdm_csv"]

EHR = 32817


def insert_sample_population(
    db: HubDatabase, persons: int = 30, visits_per_person: int = 4
) -> dict[str, int]:
    """Insert ``persons`` persons with visits, conditions, measurements, drugs, observations, deaths."""
    if persons < 1 or visits_per_person < 4:
        raise QualityError(
            f"sample needs persons >= 1 and visits_per_person >= 4; got {persons}, {visits_per_person}"
        )
    v = visits_per_person
    statements = [
        "INSERT INTO location (location_id, city, state, zip, country_source_value) VALUES"
        " (1, 'Gwangju', 'KR-29', '610', 'KR'), (2, 'Suwon', 'KR-41', '164', 'KR'),"
        " (3, 'Busan', 'KR-26', '480', 'KR')",
        f"""INSERT INTO person (person_id, gender_concept_id, year_of_birth, month_of_birth, day_of_birth,
            race_concept_id, ethnicity_concept_id, location_id, person_source_value, gender_source_value)
            SELECT i, CASE WHEN i % 2 = 0 THEN 8532 ELSE 8507 END, 1935 + (i * 7) % 70, 1 + i % 12, 1 + i % 28,
                   8515, 38003564, 1 + i % 3, 'S' || i, CASE WHEN i % 2 = 0 THEN 'F' ELSE 'M' END
            FROM range(1, {persons + 1}) r(i)""",
        f"""INSERT INTO observation_period SELECT i, i, DATE '2015-01-01', DATE '2024-12-31', {EHR}
            FROM range(1, {persons + 1}) r(i)""",
        # Visits: spread over 2016-2024; the last visit of each person is an emergency visit.
        f"""INSERT INTO visit_occurrence (visit_occurrence_id, person_id, visit_concept_id, visit_start_date,
            visit_end_date, visit_type_concept_id, visit_source_value, visit_source_concept_id)
            SELECT i * 1000 + k, i, CASE WHEN k = {v - 1} THEN 9203 WHEN k % 5 = 4 THEN 9201 ELSE 9202 END,
                   DATE '2016-01-04' + CAST((i * 37 + k * 811) % 3200 AS INTEGER),
                   DATE '2016-01-04' + CAST((i * 37 + k * 811) % 3200 AS INTEGER)
                     + CASE WHEN k % 5 = 4 AND k <> {v - 1} THEN 3 ELSE 0 END,
                   {EHR}, 'V' || k, 0
            FROM range(1, {persons + 1}) r(i), range(0, {v}) s(k)""",
        # One chronic condition at the first visit, ILI at the emergency visit.
        f"""INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,
            condition_start_date, condition_type_concept_id, visit_occurrence_id, condition_source_value,
            condition_source_concept_id)
            SELECT vo.visit_occurrence_id, vo.person_id, c.concept_id, vo.visit_start_date, {EHR},
                   vo.visit_occurrence_id, c.concept_code, c.concept_id
            FROM visit_occurrence vo JOIN concept c ON c.concept_id = CASE
                WHEN vo.visit_concept_id = 9203 THEN 2000000001
                ELSE [201826, 320128, 4329847, 381316, 317576][1 + CAST(vo.person_id % 5 AS INTEGER)] END
            WHERE vo.visit_occurrence_id % 1000 IN (0, {v - 1})""",
        # Measurements at every outpatient visit: SBP, DBP, HbA1c, BMI.
        f"""INSERT INTO measurement (measurement_id, person_id, measurement_concept_id, measurement_date,
            measurement_type_concept_id, value_as_number, unit_concept_id, visit_occurrence_id,
            measurement_source_value, measurement_source_concept_id)
            SELECT vo.visit_occurrence_id * 10 + m.j, vo.person_id, m.concept_id, vo.visit_start_date, {EHR},
                   m.base + (vo.person_id * 7 + vo.visit_occurrence_id) % m.spread, m.unit,
                   vo.visit_occurrence_id, m.code, m.concept_id
            FROM visit_occurrence vo, (VALUES (1, 3004249, 100.0, 50, 8876, '8480-6'),
                (2, 3012888, 60.0, 30, 8876, '8462-4'), (3, 3004410, 4.5, 6, 8554, '4548-4'),
                (4, 3038553, 18.0, 17, 9531, '39156-5')) m(j, concept_id, base, spread, unit, code)
            WHERE vo.visit_concept_id = 9202""",
        f"""INSERT INTO drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date,
            drug_exposure_end_date, drug_type_concept_id, quantity, days_supply, refills, visit_occurrence_id,
            drug_source_value, drug_source_concept_id)
            SELECT vo.visit_occurrence_id, vo.person_id,
                   [40163924, 19080128, 1332419, 1545959][1 + CAST(vo.person_id % 4 AS INTEGER)],
                   vo.visit_start_date, vo.visit_start_date + 29, {EHR}, 30, 30, 1, vo.visit_occurrence_id,
                   'RX', 0
            FROM visit_occurrence vo WHERE vo.visit_occurrence_id % 1000 = 1""",
        f"""INSERT INTO observation (observation_id, person_id, observation_concept_id, observation_date,
            observation_type_concept_id, value_as_concept_id, visit_occurrence_id, observation_source_value,
            observation_source_concept_id)
            SELECT vo.visit_occurrence_id, vo.person_id, 43054909, vo.visit_start_date, {EHR},
                   CASE WHEN vo.person_id % 4 = 0 THEN 42709996 ELSE 0 END, vo.visit_occurrence_id, '72166-2',
                   43054909
            FROM visit_occurrence vo WHERE vo.visit_occurrence_id % 1000 = 0""",
        f"""INSERT INTO death (person_id, death_date, death_type_concept_id)
            SELECT i, DATE '2024-12-31', {EHR} FROM range(10, {persons + 1}, 10) r(i)""",
        """INSERT INTO cdm_source (cdm_source_name, cdm_source_abbreviation, cdm_holder, source_release_date,
            cdm_release_date, cdm_version, cdm_version_concept_id, vocabulary_version)
            VALUES ('healthmesh sample population', 'sample', 'healthmesh', DATE '2025-01-01',
                    DATE '2025-01-01', '5.4', 0, 'v5.0 09-APR-22')""",
    ]
    for sql in statements:
        db.execute(sql)
    return db.table_counts(
        [
            "person",
            "observation_period",
            "visit_occurrence",
            "condition_occurrence",
            "measurement",
            "drug_exposure",
            "observation",
            "death",
        ]
    )


def load_cdm_csv(db: HubDatabase, folder: str | Path) -> dict[str, int]:
    """Append the clinical tables of an OMOP CDM CSV export (``person.csv``, ``measurement.csv.gz``...).

    Vocabulary tables are left alone (the hub has its own); columns are matched by name.
    """
    directory = Path(folder)
    if not directory.is_dir():
        raise QualityError(f"CDM export folder {directory} not found")
    counts: dict[str, int] = {}
    for table, fields in cdm_tables().items():
        if table in VOCABULARY_TABLES:
            continue
        path = next(
            (p for p in (directory / f"{table}.csv", directory / f"{table}.csv.gz") if p.exists()), None
        )
        if path is None:
            continue
        source = f"read_csv('{path}', header=true, all_varchar=true)"
        header = {str(r[0]).lower() for r in db.rows(f"DESCRIBE SELECT * FROM {source}")}
        names = [f'"{f.name}"' for f in fields if f.name in header]
        select = [f"nullif(\"{f.name}\", '')::{sql_type(f.datatype)}" for f in fields if f.name in header]
        db.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(select)} FROM {source}")
        counts[table] = int(db.scalar(f"SELECT count(*) FROM {table}"))
    return counts
