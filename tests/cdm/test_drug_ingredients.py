"""The bundled vocabulary rolls drugs up to their RxNorm ingredients, so drug eras are built from it."""

from __future__ import annotations

from datetime import date

from healthmesh.cdm.database import HubDatabase
from healthmesh.cdm.eras import build_eras

LISINOPRIL = 1308216  # RxNorm Ingredient
LISINOPRIL_10MG = (
    19080128  # lisinopril 10 MG Oral Tablet: Consists of a component whose ingredient is lisinopril
)
PENICILLIN_V = 1729720
PENICILLIN_V_250MG = 19133873  # penicillin V potassium 250 MG Oral Tablet
SIMVASTATIN_20MG = 1539411  # in the subset, but none of its RxNorm relationships reach an ingredient it holds


def test_drugs_descend_from_their_ingredients_through_rxnorm_relationships(hub_db: HubDatabase) -> None:
    ancestors = {
        drug: {
            row[0]
            for row in hub_db.rows(
                "SELECT a.ancestor_concept_id FROM concept_ancestor a JOIN concept c ON c.concept_id = a.ancestor_concept_id"
                " WHERE a.descendant_concept_id = ? AND c.concept_class_id = 'Ingredient'",
                [drug],
            )
        }  # fmt: skip
        for drug in (LISINOPRIL_10MG, PENICILLIN_V_250MG, SIMVASTATIN_20MG)
    }
    assert ancestors == {
        LISINOPRIL_10MG: {LISINOPRIL},
        PENICILLIN_V_250MG: {PENICILLIN_V},
        SIMVASTATIN_20MG: set(),
    }
    # Every ingredient ancestor is a standard, valid RxNorm Ingredient of CONCEPT (DQD fkClass of DRUG_ERA).
    assert (
        hub_db.scalar(
            "SELECT count(*) FROM concept_ancestor a JOIN concept d ON d.concept_id = a.descendant_concept_id"
            " JOIN concept i ON i.concept_id = a.ancestor_concept_id"
            " WHERE d.vocabulary_id = 'RxNorm' AND i.concept_class_id = 'Ingredient' AND a.ancestor_concept_id <> a.descendant_concept_id"
            " AND (i.standard_concept IS DISTINCT FROM 'S' OR i.invalid_reason IS NOT NULL)"
        )
        == 0
    )


def test_drug_eras_are_built_per_ingredient_from_the_bundled_vocabulary(hub_db: HubDatabase) -> None:
    hub_db.execute(
        "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, ethnicity_concept_id)"
        " VALUES (1, 8507, 1960, 0, 0)"
    )
    exposures = [  # two lisinopril prescriptions 20 days apart: one era; simvastatin: no ingredient, no era
        (1, LISINOPRIL_10MG, date(2020, 1, 1), date(2020, 1, 30)),
        (2, LISINOPRIL_10MG, date(2020, 2, 19), date(2020, 3, 19)),
        (3, PENICILLIN_V_250MG, date(2020, 5, 1), date(2020, 5, 10)),
        (4, SIMVASTATIN_20MG, date(2020, 1, 1), date(2020, 3, 1)),
    ]
    for row in exposures:
        hub_db.execute(
            "INSERT INTO drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date,"
            " drug_exposure_end_date, drug_type_concept_id) VALUES (?, 1, ?, ?, ?, 32817)",
            list(row),
        )
    assert build_eras(hub_db)["drug_era"] == 2
    assert [
        tuple(r)
        for r in hub_db.rows(
            "SELECT drug_concept_id, drug_era_start_date, drug_era_end_date, drug_exposure_count, gap_days"
            " FROM drug_era ORDER BY drug_era_start_date"
        )
    ] == [  # fmt: skip
        (LISINOPRIL, date(2020, 1, 1), date(2020, 3, 19), 2, 20),
        (PENICILLIN_V, date(2020, 5, 1), date(2020, 5, 10), 1, 0),
    ]
