"""CONDITION_ERA, DRUG_ERA and DOSE_ERA from the CDM's event tables, with OHDSI's era rules.

- Condition era: occurrences of one condition concept whose gap is at most 30 days (the
  persistence window) are one era; an occurrence without an end date lasts one day.
  ``condition_occurrence_count`` counts them.
- Drug era: each exposure rolls up through ``concept_ancestor`` to its RxNorm Ingredient(s). An
  exposure without an end date ends ``days_supply`` days after its start, else one day after.
  Overlapping or touching exposures of one ingredient first merge into sub-exposures; sub-exposures
  at most 30 days apart form an era. ``gap_days`` is the era's length minus the days exposed.
- Dose era: exposures of one ingredient at one dose (``drug_strength``: the amount, or the
  numerator per denominator, with its unit) at most 30 days apart form an era.

Gaps are measured from the latest end so far to the next start, so an era never ends before an
earlier, longer record does; a record starting exactly 30 days after that end joins the era.
Concept 0 and records without a standard concept form no era. All set-based SQL in DuckDB's
dialect, which the PostgreSQL database transpiles.
"""

from __future__ import annotations

from healthmesh.cdm.database import HubDatabase

__all__ = ["ERA_TABLES", "PERSISTENCE_DAYS", "build_eras"]

PERSISTENCE_DAYS = 30
ERA_TABLES = ("condition_era", "drug_era", "dose_era")


def _islands(source: str, partition: str, start: str, end: str, gap: int) -> str:
    """SQL numbering each row's island (``island``) within ``partition``: a row opens a new one when
    it starts more than ``gap`` days after the latest end of the rows before it."""
    order = f"PARTITION BY {partition} ORDER BY {start}, {end}"
    return f"""
        SELECT *, sum(opens) OVER ({order} ROWS UNBOUNDED PRECEDING) AS island FROM (
            SELECT *, CASE WHEN {start} <= max({end}) OVER ({order} ROWS BETWEEN UNBOUNDED PRECEDING
                                                                AND 1 PRECEDING) + {gap}
                           THEN 0 ELSE 1 END AS opens
            FROM ({source}) AS rows_in
        ) AS marked"""


def _next_id(table: str, key: str, scoped: bool) -> str:
    return f"(SELECT coalesce(max({key}), 0) FROM {table})" if scoped else "0"


def _drug_targets(scope: str) -> str:
    """One row per exposure and ingredient: person, ingredient, drug, start and end date."""
    return f"""
        SELECT d.person_id, a.ancestor_concept_id AS ingredient_id, d.drug_concept_id,
               d.drug_exposure_start_date AS start_date,
               coalesce(d.drug_exposure_end_date,
                        d.drug_exposure_start_date + CAST(coalesce(nullif(d.days_supply, 0), 1) AS INTEGER)) AS end_date
        FROM drug_exposure d
        JOIN concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id
        JOIN concept i ON i.concept_id = a.ancestor_concept_id
        WHERE d.drug_concept_id <> 0 AND i.concept_class_id = 'Ingredient'
          AND i.vocabulary_id IN ('RxNorm', 'RxNorm Extension') AND {scope}"""


def _condition_era(scope: str, scoped: bool) -> str:
    targets = f"""
        SELECT person_id, condition_concept_id AS concept_id, condition_start_date AS start_date,
               coalesce(condition_end_date, condition_start_date + 1) AS end_date
        FROM condition_occurrence WHERE condition_concept_id <> 0 AND {scope}"""
    return f"""
        INSERT INTO condition_era BY NAME
        SELECT {_next_id("condition_era", "condition_era_id", scoped)}
                   + row_number() OVER (ORDER BY person_id, concept_id, island) AS condition_era_id,
               person_id, concept_id AS condition_concept_id, min(start_date) AS condition_era_start_date,
               max(end_date) AS condition_era_end_date, count(*) AS condition_occurrence_count
        FROM ({_islands(targets, "person_id, concept_id", "start_date", "end_date", PERSISTENCE_DAYS)}) AS e
        GROUP BY person_id, concept_id, island"""


def _drug_era(scope: str, scoped: bool) -> str:
    key = "person_id, ingredient_id"
    exposures = _islands(_drug_targets(scope), key, "start_date", "end_date", 0)
    sub_exposures = f"""
        SELECT person_id, ingredient_id, min(start_date) AS start_date, max(end_date) AS end_date,
               count(*) AS exposures
        FROM ({exposures}) AS x GROUP BY person_id, ingredient_id, island"""
    return f"""
        INSERT INTO drug_era BY NAME
        SELECT {_next_id("drug_era", "drug_era_id", scoped)}
                   + row_number() OVER (ORDER BY person_id, ingredient_id, island) AS drug_era_id,
               person_id, ingredient_id AS drug_concept_id, min(start_date) AS drug_era_start_date,
               max(end_date) AS drug_era_end_date, sum(exposures) AS drug_exposure_count,
               (max(end_date) - min(start_date)) - sum(end_date - start_date) AS gap_days
        FROM ({_islands(sub_exposures, key, "start_date", "end_date", PERSISTENCE_DAYS)}) AS e
        GROUP BY person_id, ingredient_id, island"""


def _dose_era(scope: str, scoped: bool) -> str:
    doses = f"""
        SELECT t.person_id, t.ingredient_id, t.start_date, t.end_date,
               coalesce(s.amount_unit_concept_id, s.numerator_unit_concept_id) AS unit_id,
               coalesce(s.amount_value, s.numerator_value / coalesce(nullif(s.denominator_value, 0), 1))
                   AS dose_value
        FROM ({_drug_targets(scope)}) AS t
        JOIN drug_strength s ON s.drug_concept_id = t.drug_concept_id AND s.ingredient_concept_id = t.ingredient_id
        WHERE coalesce(s.amount_value, s.numerator_value) IS NOT NULL
          AND coalesce(s.amount_unit_concept_id, s.numerator_unit_concept_id) IS NOT NULL"""
    key = "person_id, ingredient_id, unit_id, dose_value"
    return f"""
        INSERT INTO dose_era BY NAME
        SELECT {_next_id("dose_era", "dose_era_id", scoped)}
                   + row_number() OVER (ORDER BY {key}, island) AS dose_era_id,
               person_id, ingredient_id AS drug_concept_id, unit_id AS unit_concept_id, dose_value,
               min(start_date) AS dose_era_start_date, max(end_date) AS dose_era_end_date
        FROM ({_islands(doses, key, "start_date", "end_date", PERSISTENCE_DAYS)}) AS e
        GROUP BY {key}, island"""


def build_eras(db: HubDatabase, persons_sql: str | None = None) -> dict[str, int]:
    """Rebuild the three era tables, for every person or for those ``persons_sql`` selects
    (a query returning ``person_id``); returns each table's row count.

    Runs inside the caller's transaction, if any.
    """
    scoped = persons_sql is not None
    scope = f"person_id IN ({persons_sql})" if scoped else "true"
    for table, build in (("condition_era", _condition_era), ("drug_era", _drug_era), ("dose_era", _dose_era)):
        db.execute(f"DELETE FROM {table} WHERE {scope}")
        db.execute(build(scope, scoped))
    return {table: int(db.scalar(f"SELECT count(*) FROM {table}")) for table in ERA_TABLES}
