"""The hub's catalog entry: a DCAT-like description built only from released aggregates.

A count of persons takes the key of its person set (as in characterization, cohort and federated
counts); a count of rows, the label of the rows of its table (``rows_label``, as the quality
report's denominators): every place that shows a quantity shows the same noisy value.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from healthmesh.cdm import CDM_VERSION, vocabulary_version
from healthmesh.cdm.database import HubDatabase
from healthmesh.characterize.analyses import RECORD_KEYS
from healthmesh.characterize.runner import characterize, record_key_table, sql_key
from healthmesh.privacy.disclosure import assert_release_safe
from healthmesh.privacy.release import Release
from healthmesh.quality.report import QualityReport, rows_label
from healthmesh.quality.runner import run_quality

__all__ = ["build_catalog"]

_DOMAIN_TABLES = (
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "device_exposure",
    "death",
)


def _period(db: HubDatabase) -> dict[str, str | None]:
    """Months covered by observation periods (month precision: a day could point at one person)."""
    row = db.rows(
        "SELECT strftime(min(observation_period_start_date), '%Y-%m'),"
        " strftime(max(observation_period_end_date), '%Y-%m') FROM observation_period"
    )[0]
    return {"start_month": row[0], "end_month": row[1]}


def _domains(db: HubDatabase, release: Release) -> list[dict[str, Any]]:
    present = db.tables()
    out = []
    for table in _DOMAIN_TABLES:
        if table not in present:
            continue
        records, persons, key = db.rows(
            f"SELECT count(*), count(DISTINCT t.person_id), bit_xor(DISTINCT k.rkey) FROM {table} t "
            f"LEFT JOIN {RECORD_KEYS} k ON k.person_id = t.person_id"
        )[0]
        out.append(
            {
                "table": table,
                "record_count": release.count(int(records), release.label_key(*rows_label(table))),
                "person_count": release.count(int(persons), sql_key(key)),
            }
        )
    return out


def _highlights(characterization: dict[str, Any], top: int = 5) -> dict[str, Any]:
    by_id = {a["analysis_id"]: a for a in characterization["analyses"]}

    def rows(analysis_id: int) -> list[dict[str, Any]]:
        return by_id.get(analysis_id, {}).get("rows", [])

    def top_concepts(analysis_id: int) -> list[dict[str, Any]]:
        return [
            {k: r[k] for k in ("concept_id", "concept_name", "persons", "prevalence")}
            for r in rows(analysis_id)
            if r["persons"] is not None
        ][:top]

    age = rows(103)
    return {
        "persons_by_sex": [{"gender": r["gender"], "persons": r["count_value"]} for r in rows(2)],
        "persons_by_region": [{"region": r["region"], "persons": r["count_value"]} for r in rows(1100)],
        "age_at_first_observation": {k: age[0][k] for k in ("median", "p25", "p75")} if age else None,
        "top_conditions": top_concepts(400),
        "top_drugs": top_concepts(700),
        "top_measurements": top_concepts(1800),
        "ili_weeks_published": sum(1 for r in rows(9001) if r["count_value"] is not None),
    }


def build_catalog(
    db: HubDatabase,
    hub: str,
    out_dir: str | Path | None = None,
    *,
    release: Release,
    quality: QualityReport | None = None,
    characterization: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The catalog entry of ``hub`` (``catalog.json`` in ``out_dir`` when given).

    Reuses a quality report and a characterization of the same run when passed, else runs them.
    """
    min_count = release.min_count
    quality = quality or run_quality(db, release=release)
    characterization = characterization or characterize(db, release=release, hub=hub, charts=False)
    summary = quality.summary()
    with record_key_table(db, release):
        persons, key = db.rows(f"SELECT count(*), bit_xor(rkey) FROM {RECORD_KEYS}")[0]
        domains = _domains(db, release)
    entry: dict[str, Any] = {
        "@context": {"dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/"},
        "@type": "dcat:Dataset",
        "dct:identifier": f"healthmesh:{hub}",
        "dct:title": f"healthmesh hub {hub}: OMOP CDM v{CDM_VERSION}",
        "dct:description": "Person-level data stays at the hub; this entry holds only aggregates that "
        f"passed disclosure control (counts below {min_count} withheld, the others perturbed by at most "
        f"{release.max_noise}).",
        "dct:issued": datetime.now(UTC).isoformat(timespec="seconds"),
        "dct:temporal": _period(db) if "observation_period" in db.tables() else None,
        "hub": hub,
        "cdm_version": CDM_VERSION,
        "vocabulary_version": vocabulary_version(db) if "vocabulary" in db.tables() else "unknown",
        "min_count": min_count,
        "person_count": release.count(int(persons), sql_key(key)),
        "domains": domains,
        "quality": {
            "checks_run": summary["checks_run"],
            "pct_passed": summary["pct_passed"],
            "check_types": summary["check_types"],
            "failed_checks": sorted(
                f"{r.check}:{r.table}" + (f".{r.field}" if r.field else "") for r in quality.failed()
            ),
        },
        "highlights": _highlights(characterization),
        "distributions": ["characterization.json", "quality.json", "quality.html"],
    }
    assert_release_safe(entry, min_count)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "catalog.json").write_text(json.dumps(entry, indent=2), encoding="utf-8")
    return entry
