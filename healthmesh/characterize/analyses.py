"""Achilles-style analyses: each one SQL statement over the CDM, numbered as in OHDSI Achilles.

Three kinds: ``count`` (strata and ``count_value``), ``concepts`` (a concept's ``persons``,
``records`` and prevalence) and ``distribution`` (strata, ``n_persons``, ``count_value`` and
quantiles). Disclosure control is applied afterwards, in ``characterize``.

A count of persons comes with the key of its person set, ``<column>_key``: the XOR of the persons'
record keys (``bit_xor`` over ``hm_record_keys``, the table of record keys that ``characterize``
registers for the run). The release path perturbs the count by it, so a set of persons shows the same
noise here as in a cohort count or a catalog. Counts of records or visits have no such column.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ANALYSES", "ILI_CONCEPT_ID", "RECORD_KEYS", "Analysis"]

ILI_CONCEPT_ID = 2000000001
RECORD_KEYS = "hm_record_keys"  # person_id, rkey (BIGINT): registered by characterize for one run

STATS = ("mean", "sd", "p10", "p25", "median", "p75", "p90")


@dataclass(frozen=True)
class Analysis:
    analysis_id: int
    name: str
    kind: str  # count | concepts | distribution
    sql: str
    strata: tuple[str, ...] = ()
    counts: str = "persons"  # what count_value counts: persons | records | visits
    tables: tuple[str, ...] = ()  # tables the SQL reads (an absent table skips the analysis)


def _name(alias: str, column: str) -> str:
    return f"coalesce({alias}.concept_name, CASE WHEN {column} = 0 THEN 'No matching concept' END, 'concept ' || {column})"


def _keyed(alias: str) -> str:
    """The join that gives each row its person's record key (``rkey``)."""
    return f"LEFT JOIN {RECORD_KEYS} k ON k.person_id = {alias}.person_id"


def _stats(value: str) -> str:
    return (
        "count(DISTINCT person_id) AS n_persons, bit_xor(DISTINCT k.rkey) AS n_persons_key,"
        f" count(*) AS count_value, avg({value}) AS mean,"
        f" stddev_samp({value}) AS sd, quantile_cont({value}, 0.1) AS p10, quantile_cont({value}, 0.25) AS p25,"
        f" quantile_cont({value}, 0.5) AS median, quantile_cont({value}, 0.75) AS p75,"
        f" quantile_cont({value}, 0.9) AS p90"
    )


def _concepts(analysis_id: int, domain: str, table: str, column: str) -> Analysis:
    return Analysis(
        analysis_id,
        f"{domain}: persons, records and prevalence by concept",
        "concepts",
        f"""SELECT x.{column} AS concept_id, {_name("c", f"x.{column}")} AS concept_name,
                   count(DISTINCT x.person_id) AS persons, bit_xor(DISTINCT k.rkey) AS persons_key,
                   count(*) AS records
            FROM {table} x LEFT JOIN concept c ON c.concept_id = x.{column} {_keyed("x")}
            GROUP BY ALL ORDER BY persons DESC, concept_id""",
        ("concept_id",),
        tables=(table,),
    )


def _by_month(analysis_id: int, domain: str, table: str, date: str) -> Analysis:
    return Analysis(
        analysis_id,
        f"{domain}: records by month",
        "count",
        f"SELECT strftime({date}, '%Y-%m') AS month, count(*) AS count_value FROM {table} GROUP BY 1 ORDER BY 1",
        ("month",),
        counts="records",
        tables=(table,),
    )


_DOMAINS = (
    ("visit_occurrence", "visit"),
    ("condition_occurrence", "condition"),
    ("drug_exposure", "drug"),
    ("procedure_occurrence", "procedure"),
    ("measurement", "measurement"),
    ("observation", "observation"),
    ("device_exposure", "device"),
    ("death", "death"),
)

_RECORDS_PER_PERSON = " UNION ALL ".join(
    f"SELECT '{label}' AS domain, person_id, count(*) AS n FROM {table} GROUP BY person_id"
    for table, label in _DOMAINS
)

_FIRST_OBS = """(SELECT p.person_id, p.gender_concept_id,
        year(min(op.observation_period_start_date)) - any_value(p.year_of_birth) AS age
    FROM person p JOIN observation_period op ON op.person_id = p.person_id GROUP BY 1, 2)"""

ANALYSES: tuple[Analysis, ...] = (
    Analysis(
        1,
        "number of persons",
        "count",
        f"SELECT count(*) AS count_value, bit_xor(k.rkey) AS count_value_key FROM person p {_keyed('p')}",
        tables=("person",),
    ),
    Analysis(
        2,
        "persons by sex",
        "count",
        f"""SELECT p.gender_concept_id, {_name("c", "p.gender_concept_id")} AS gender, count(*) AS count_value,
                   bit_xor(k.rkey) AS count_value_key
            FROM person p LEFT JOIN concept c ON c.concept_id = p.gender_concept_id {_keyed("p")}
            GROUP BY ALL ORDER BY 1""",
        ("gender_concept_id",),
        tables=("person",),
    ),
    Analysis(
        3,
        "persons by year of birth",
        "count",
        f"""SELECT p.year_of_birth, count(*) AS count_value, bit_xor(k.rkey) AS count_value_key
            FROM person p {_keyed("p")} GROUP BY 1 ORDER BY 1""",
        ("year_of_birth",),
        tables=("person",),
    ),
    Analysis(
        4,
        "persons by race",
        "count",
        f"""SELECT p.race_concept_id, {_name("c", "p.race_concept_id")} AS race, count(*) AS count_value,
                   bit_xor(k.rkey) AS count_value_key
            FROM person p LEFT JOIN concept c ON c.concept_id = p.race_concept_id {_keyed("p")}
            GROUP BY ALL ORDER BY 1""",
        ("race_concept_id",),
        tables=("person",),
    ),
    Analysis(
        5,
        "persons by ethnicity",
        "count",
        f"""SELECT p.ethnicity_concept_id, {_name("c", "p.ethnicity_concept_id")} AS ethnicity,
                   count(*) AS count_value, bit_xor(k.rkey) AS count_value_key
            FROM person p LEFT JOIN concept c ON c.concept_id = p.ethnicity_concept_id {_keyed("p")}
            GROUP BY ALL ORDER BY 1""",
        ("ethnicity_concept_id",),
        tables=("person",),
    ),
    Analysis(
        10,
        "persons by decade of birth and sex",
        "count",
        f"""SELECT (p.year_of_birth // 10) * 10 AS birth_decade, p.gender_concept_id, count(*) AS count_value,
                   bit_xor(k.rkey) AS count_value_key
            FROM person p {_keyed("p")} GROUP BY ALL ORDER BY 1, 2""",
        ("birth_decade", "gender_concept_id"),
        tables=("person",),
    ),
    Analysis(
        101,
        "persons by age decile at first observation",
        "count",
        f"""SELECT (f.age // 10) * 10 AS age_decile, count(*) AS count_value, bit_xor(k.rkey) AS count_value_key
            FROM {_FIRST_OBS} f {_keyed("f")} GROUP BY 1 ORDER BY 1""",
        ("age_decile",),
        tables=("person", "observation_period"),
    ),
    Analysis(
        102,
        "persons by age decile at first observation and sex",
        "count",
        f"""SELECT (f.age // 10) * 10 AS age_decile, f.gender_concept_id, count(*) AS count_value,
                   bit_xor(k.rkey) AS count_value_key
            FROM {_FIRST_OBS} f {_keyed("f")} GROUP BY ALL ORDER BY 1, 2""",
        ("age_decile", "gender_concept_id"),
        tables=("person", "observation_period"),
    ),
    Analysis(
        103,
        "distribution of age at first observation (years)",
        "distribution",
        f"SELECT {_stats('age')} FROM {_FIRST_OBS} f LEFT JOIN {RECORD_KEYS} k USING (person_id)",
        tables=("person", "observation_period"),
    ),
    Analysis(
        105,
        "distribution of observation-period length (days)",
        "distribution",
        f"""SELECT {_stats("observation_period_end_date - observation_period_start_date")}
            FROM observation_period LEFT JOIN {RECORD_KEYS} k USING (person_id)""",
        tables=("observation_period",),
    ),
    Analysis(
        108,
        "persons by total observed years",
        "count",
        f"""SELECT o.years_observed, count(*) AS count_value, bit_xor(k.rkey) AS count_value_key FROM (
               SELECT person_id, sum(observation_period_end_date - observation_period_start_date) // 365
                      AS years_observed FROM observation_period GROUP BY 1) o {_keyed("o")}
            GROUP BY 1 ORDER BY 1""",
        ("years_observed",),
        tables=("observation_period",),
    ),
    Analysis(
        109,
        "persons by number of observation periods",
        "count",
        f"""SELECT o.periods, count(*) AS count_value, bit_xor(k.rkey) AS count_value_key FROM (
               SELECT person_id, count(*) AS periods FROM observation_period GROUP BY 1) o {_keyed("o")}
            GROUP BY 1 ORDER BY 1""",
        ("periods",),
        tables=("observation_period",),
    ),
    Analysis(
        111,
        "observation periods by year of start",
        "count",
        """SELECT year(observation_period_start_date) AS start_year, count(*) AS count_value
           FROM observation_period GROUP BY 1 ORDER BY 1""",
        ("start_year",),
        counts="records",
        tables=("observation_period",),
    ),
    Analysis(
        116,
        "persons observed in each calendar year",
        "count",
        f"""SELECT y.calendar_year, count(DISTINCT op.person_id) AS count_value,
                  bit_xor(DISTINCT k.rkey) AS count_value_key
           FROM observation_period op {_keyed("op")},
                LATERAL (SELECT unnest(range(year(op.observation_period_start_date),
                                             year(op.observation_period_end_date) + 1)) AS calendar_year) y
           GROUP BY 1 ORDER BY 1""",
        ("calendar_year",),
        tables=("observation_period",),
    ),
    Analysis(
        200,
        "persons by visit type",
        "count",
        f"""SELECT v.visit_concept_id, {_name("c", "v.visit_concept_id")} AS visit_type,
                   count(DISTINCT v.person_id) AS count_value, bit_xor(DISTINCT k.rkey) AS count_value_key
            FROM visit_occurrence v LEFT JOIN concept c ON c.concept_id = v.visit_concept_id {_keyed("v")}
            GROUP BY ALL ORDER BY 1""",
        ("visit_concept_id",),
        tables=("visit_occurrence",),
    ),
    Analysis(
        201,
        "visits by visit type",
        "count",
        f"""SELECT v.visit_concept_id, {_name("c", "v.visit_concept_id")} AS visit_type, count(*) AS count_value
            FROM visit_occurrence v LEFT JOIN concept c ON c.concept_id = v.visit_concept_id GROUP BY ALL ORDER BY 1""",
        ("visit_concept_id",),
        counts="visits",
        tables=("visit_occurrence",),
    ),
    Analysis(
        211,
        "distribution of visit length (days) by visit type",
        "distribution",
        f"""SELECT visit_concept_id, {_stats("visit_end_date - visit_start_date")}
            FROM visit_occurrence LEFT JOIN {RECORD_KEYS} k USING (person_id) GROUP BY 1 ORDER BY 1""",
        ("visit_concept_id",),
        tables=("visit_occurrence",),
    ),
    Analysis(
        220,
        "visits by visit type and month",
        "count",
        """SELECT visit_concept_id, strftime(visit_start_date, '%Y-%m') AS month, count(*) AS count_value
           FROM visit_occurrence GROUP BY ALL ORDER BY 2, 1""",
        ("visit_concept_id", "month"),
        counts="visits",
        tables=("visit_occurrence",),
    ),
    _concepts(400, "conditions", "condition_occurrence", "condition_concept_id"),
    _by_month(402, "conditions", "condition_occurrence", "condition_start_date"),
    Analysis(
        404,
        "persons with a condition by concept and sex",
        "count",
        f"""SELECT x.condition_concept_id AS concept_id, p.gender_concept_id, count(DISTINCT x.person_id) AS count_value,
                   bit_xor(DISTINCT k.rkey) AS count_value_key
            FROM condition_occurrence x JOIN person p ON p.person_id = x.person_id {_keyed("x")}
            GROUP BY ALL ORDER BY 1, 2""",
        ("concept_id", "gender_concept_id"),
        tables=("condition_occurrence", "person"),
    ),
    Analysis(
        501,
        "deaths by year",
        "count",
        "SELECT year(death_date) AS death_year, count(*) AS count_value FROM death GROUP BY 1 ORDER BY 1",
        ("death_year",),
        tables=("death",),
    ),
    Analysis(
        506,
        "distribution of age at death (years)",
        "distribution",
        f"""SELECT {_stats("age")} FROM (SELECT d.person_id, year(min(d.death_date)) - any_value(p.year_of_birth) AS age
            FROM death d JOIN person p ON p.person_id = d.person_id GROUP BY 1) a
            LEFT JOIN {RECORD_KEYS} k USING (person_id)""",
        tables=("death", "person"),
    ),
    _concepts(600, "procedures", "procedure_occurrence", "procedure_concept_id"),
    _by_month(602, "procedures", "procedure_occurrence", "procedure_date"),
    _concepts(700, "drugs", "drug_exposure", "drug_concept_id"),
    _by_month(702, "drugs", "drug_exposure", "drug_exposure_start_date"),
    Analysis(
        715,
        "distribution of days supply by drug concept",
        "distribution",
        f"""SELECT drug_concept_id AS concept_id, {_stats("days_supply")}
            FROM drug_exposure LEFT JOIN {RECORD_KEYS} k USING (person_id)
            WHERE days_supply IS NOT NULL GROUP BY 1 ORDER BY 1""",
        ("concept_id",),
        tables=("drug_exposure",),
    ),
    _concepts(800, "observations", "observation", "observation_concept_id"),
    _by_month(802, "observations", "observation", "observation_date"),
    Analysis(
        807,
        "observation values (value_as_concept) by observation concept",
        "count",
        f"""SELECT o.observation_concept_id AS concept_id, o.value_as_concept_id,
                   {_name("c", "o.value_as_concept_id")} AS value_name, count(*) AS count_value
            FROM observation o LEFT JOIN concept c ON c.concept_id = o.value_as_concept_id
            WHERE o.value_as_concept_id IS NOT NULL GROUP BY ALL ORDER BY 1, 2""",
        ("concept_id", "value_as_concept_id"),
        counts="records",
        tables=("observation",),
    ),
    Analysis(
        1100,
        "persons by region (location state)",
        "count",
        f"""SELECT coalesce(l.state, 'unknown') AS region, count(*) AS count_value, bit_xor(k.rkey) AS count_value_key
            FROM person p LEFT JOIN location l ON l.location_id = p.location_id {_keyed("p")}
            GROUP BY 1 ORDER BY 1""",
        ("region",),
        tables=("person", "location"),
    ),
    Analysis(
        1101,
        "persons by region and sex",
        "count",
        f"""SELECT coalesce(l.state, 'unknown') AS region, p.gender_concept_id, count(*) AS count_value,
                   bit_xor(k.rkey) AS count_value_key
            FROM person p LEFT JOIN location l ON l.location_id = p.location_id {_keyed("p")}
            GROUP BY ALL ORDER BY 1, 2""",
        ("region", "gender_concept_id"),
        tables=("person", "location"),
    ),
    _concepts(1800, "measurements", "measurement", "measurement_concept_id"),
    _by_month(1802, "measurements", "measurement", "measurement_date"),
    Analysis(
        1815,
        "distribution of numeric measurement values by concept and unit",
        "distribution",
        f"""SELECT measurement_concept_id AS concept_id, unit_concept_id, {_stats("value_as_number")}
            FROM measurement LEFT JOIN {RECORD_KEYS} k USING (person_id)
            WHERE value_as_number IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2""",
        ("concept_id", "unit_concept_id"),
        tables=("measurement",),
    ),
    Analysis(
        2000,
        "distribution of records per person by domain",
        "distribution",
        f"""SELECT domain, {_stats("n")} FROM ({_RECORDS_PER_PERSON}) r LEFT JOIN {RECORD_KEYS} k USING (person_id)
            GROUP BY 1 ORDER BY 1""",
        ("domain",),
        tables=tuple(t for t, _ in _DOMAINS),
    ),
    Analysis(
        2001,
        "persons with at least one record by domain",
        "count",
        f"""SELECT r.domain, count(*) AS count_value, bit_xor(k.rkey) AS count_value_key
            FROM ({_RECORDS_PER_PERSON}) r {_keyed("r")} GROUP BY 1 ORDER BY 1""",
        ("domain",),
        tables=tuple(t for t, _ in _DOMAINS),
    ),
    Analysis(
        9001,
        "influenza-like-illness visits by region and ISO week",
        "count",
        f"""SELECT coalesce(l.state, 'unknown') AS region,
                   strftime(x.condition_start_date, '%G-W%V') AS iso_week,
                   min(date_trunc('week', x.condition_start_date))::DATE AS week_start,
                   count(DISTINCT coalesce(x.visit_occurrence_id, -x.condition_occurrence_id)) AS count_value
            FROM condition_occurrence x JOIN person p ON p.person_id = x.person_id
            LEFT JOIN location l ON l.location_id = p.location_id
            WHERE x.condition_concept_id = {ILI_CONCEPT_ID} GROUP BY 1, 2 ORDER BY 1, 2""",
        ("region", "iso_week"),
        counts="visits",
        tables=("condition_occurrence", "person", "location"),
    ),
)
