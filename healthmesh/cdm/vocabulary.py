"""Load OMOP vocabulary tables and build the source-to-standard lookup that ingest joins against.

Two file forms are read, told apart by content: Athena exports (tab-separated, dates ``YYYYMMDD``,
upper-case names such as ``CONCEPT.csv``) and the comma-separated CDM form with ISO dates (the
bundled default, from OHDSI's Eunomia Synthea27Nj). Files may be gzipped.
"""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

from healthmesh.cdm.database import HubDatabase
from healthmesh.cdm.schema import cdm_tables
from healthmesh.errors import VocabularyError

__all__ = ["VOCABULARY_TABLES", "bundled_vocabulary_dir", "load_vocabulary", "vocabulary_version"]

VOCABULARY_TABLES = (
    "concept",
    "concept_relationship",
    "concept_ancestor",
    "vocabulary",
    "domain",
    "concept_class",
    "relationship",
    "concept_synonym",
    "drug_strength",
)

_DATE_COLUMNS = {"valid_start_date", "valid_end_date"}


def bundled_vocabulary_dir() -> Path:
    return Path(str(resources.files("healthmesh.cdm").joinpath("vocabulary")))


def _find(directory: Path, table: str) -> Path | None:
    for candidate in sorted(directory.iterdir()):
        name = candidate.name.lower()
        if name in (f"{table}.csv", f"{table}.csv.gz", f"{table}.tsv", f"{table}.tsv.gz"):
            return candidate
    return None


def _first_line(path: Path) -> str:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig") as handle:  # type: ignore[operator]
        return str(handle.readline())


def _header(table: str, path: Path) -> tuple[str, set[str]]:
    """The file's delimiter and column names; a file without a required column is refused."""
    header = _first_line(path)
    delimiter = "\t" if "\t" in header else ","
    found = {c.strip().lower() for c in header.strip().split(delimiter)}
    missing = [f.name for f in cdm_tables()[table] if f.required and f.name not in found]
    if missing:
        raise VocabularyError(
            f"{path.name}: missing columns {', '.join(missing)}; is it an OMOP {table} file?"
        )
    return delimiter, found


def _load_table(db: HubDatabase, table: str, path: Path) -> int:
    delimiter, found = _header(table, path)
    fields = cdm_tables()[table]
    athena = delimiter == "\t"
    select = []
    for f in fields:
        if f.name not in found:
            select.append(f"NULL AS {f.name}")
        elif f.name in _DATE_COLUMNS and athena:
            select.append(f"strptime(nullif({f.name}, ''), '%Y%m%d')::DATE AS {f.name}")
        else:
            select.append(f"nullif({f.name}, '')::{_cast(f.datatype)} AS {f.name}")
    quote = "" if athena else '"'
    source = (
        f"read_csv('{path}', delim='{delimiter}', header=true, all_varchar=true, quote='{quote}',"
        " null_padding=true, normalize_names=true)"
    )
    db.execute(f"DELETE FROM {table}")
    db.execute(f"INSERT INTO {table} SELECT {', '.join(select)} FROM {source}")
    return int(db.scalar(f"SELECT count(*) FROM {table}"))


def _cast(datatype: str) -> str:
    if datatype == "integer":
        return "BIGINT"
    if datatype == "float":
        return "DOUBLE"
    if datatype == "date":
        return "DATE"
    return "VARCHAR"


def load_vocabulary(db: HubDatabase, directory: Path | None = None) -> dict[str, int]:
    """Load every vocabulary table found in ``directory`` (default: the bundled subset).

    The bundled supplements (special, type, unit and platform concepts, CVX vaccines, concepts
    from OHDSI's Phenotype Library, "Maps to" targets the subset lacks) are added where absent, the
    ``concept_ancestor`` table is derived from "Is a" and RxNorm's drug-to-ingredient relationships
    when the files give none, and the
    ``hm_concept_map`` lookup (source code to standard concept and domain, and the bundled aliases of
    UCUM units as FHIR writes them) is rebuilt.
    """
    directory = directory or bundled_vocabulary_dir()
    if not directory.is_dir():
        raise VocabularyError(f"vocabulary folder {directory} does not exist")
    found = {table: _find(directory, table) for table in VOCABULARY_TABLES}
    if found["concept"] is None:
        raise VocabularyError(f"no CONCEPT file in {directory}; expected CONCEPT.csv or concept.csv(.gz)")
    for table, path in found.items():  # every file is checked before anything changes
        if path is not None:
            _header(table, path)
    counts: dict[str, int] = {}
    db.execute("BEGIN TRANSACTION")  # a file that fails to load leaves the hub's vocabulary as it was
    try:
        for (
            table,
            path,
        ) in found.items():  # a table the folder lacks is emptied: nothing of the last one stays
            if path is None:
                db.execute(f"DELETE FROM {table}")
            else:
                counts[table] = _load_table(db, table, path)
        _add_supplements(db)
        if not db.scalar("SELECT count(*) FROM concept_ancestor"):
            counts["concept_ancestor"] = _derive_ancestors(db)
        _build_concept_map(db)
        _add_unit_aliases(db)
        counts["concept"] = int(db.scalar("SELECT count(*) FROM concept"))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return counts


SUPPLEMENTS = ("supplement.csv", "supplement_cvx.csv", "supplement_phenotypes.csv", "supplement_targets.csv")


def _add_supplements(db: HubDatabase) -> None:
    """Add the bundled supplements' concepts that the loaded files lack (a full export keeps its own rows)."""
    for name in SUPPLEMENTS:
        db.execute(
            "INSERT INTO concept BY NAME SELECT * REPLACE (concept_id::BIGINT AS concept_id,"
            " valid_start_date::DATE AS valid_start_date, valid_end_date::DATE AS valid_end_date)"
            " FROM read_csv(?, header=true, all_varchar=true) s"
            " WHERE s.concept_id::BIGINT NOT IN (SELECT concept_id FROM concept)",
            [str(bundled_vocabulary_dir() / name)],
        )


# RxNorm relationships that lead from a drug towards its ingredients (a product to its components,
# a brand to its clinical drug, a pack to its drugs, a component to its ingredient), and their
# inverses, read the other way. A drug's ingredients are ancestors in OHDSI's concept_ancestor.
_RXNORM_UP = ("Consists of", "Tradename of", "Quantified form of", "Contains", "RxNorm has ing")
_RXNORM_DOWN = ("Constitutes", "Has tradename", "Has quantified form", "Contained in", "RxNorm ing of")


def _quoted(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _derive_ancestors(db: HubDatabase) -> int:
    """Transitive closure of "Is a" among the concepts present, each RxNorm drug's ingredients (through
    the RxNorm relationships, whose intermediate concepts need not be present), plus each standard
    concept as its own ancestor."""
    db.execute(
        f"""
        INSERT INTO concept_ancestor
        WITH RECURSIVE isa AS (
            SELECT concept_id_1 AS child, concept_id_2 AS parent FROM concept_relationship
            WHERE relationship_id = 'Is a' AND invalid_reason IS NULL  -- between concepts the table holds
              AND concept_id_1 IN (SELECT concept_id FROM concept) AND concept_id_2 IN (SELECT concept_id FROM concept)
        ), walk(ancestor, descendant, depth) AS (
            SELECT parent, child, 1 FROM isa
            UNION
            SELECT isa.parent, walk.descendant, walk.depth + 1 FROM walk JOIN isa ON isa.child = walk.ancestor
            WHERE walk.depth < 20
        ), rx AS (
            SELECT concept_id_1 AS child, concept_id_2 AS parent FROM concept_relationship
            WHERE relationship_id IN ({_quoted(_RXNORM_UP)}) AND invalid_reason IS NULL
            UNION
            SELECT concept_id_2, concept_id_1 FROM concept_relationship
            WHERE relationship_id IN ({_quoted(_RXNORM_DOWN)}) AND invalid_reason IS NULL
        ), drugs(descendant, node, depth) AS (
            SELECT concept_id, concept_id, 0 FROM concept
            WHERE vocabulary_id IN ('RxNorm', 'RxNorm Extension') AND concept_class_id <> 'Ingredient'
              AND standard_concept = 'S'
            UNION
            SELECT drugs.descendant, rx.parent, drugs.depth + 1 FROM drugs JOIN rx ON rx.child = drugs.node
            WHERE drugs.depth < 4  -- pack, branded drug, clinical drug, component, ingredient
        ), pairs AS (
            SELECT ancestor, descendant, depth FROM walk
            UNION ALL
            SELECT i.concept_id, drugs.descendant, drugs.depth FROM drugs
            JOIN concept i ON i.concept_id = drugs.node
            WHERE i.concept_class_id = 'Ingredient' AND i.standard_concept = 'S' AND drugs.depth > 0
        )
        SELECT ancestor, descendant, min(depth), max(depth) FROM pairs GROUP BY ancestor, descendant
        UNION ALL
        SELECT concept_id, concept_id, 0, 0 FROM concept WHERE standard_concept = 'S'
        """
    )
    return int(db.scalar("SELECT count(*) FROM concept_ancestor"))


def _build_concept_map(db: HubDatabase) -> None:
    """One row per (vocabulary, code): its source concept, standard concept and target domain."""
    db.execute(
        """
        CREATE OR REPLACE TABLE hm_concept_map AS
        WITH maps AS (
            SELECT r.concept_id_1 AS source_id, min(r.concept_id_2) AS standard_id
            FROM concept_relationship r JOIN concept t ON t.concept_id = r.concept_id_2
            WHERE r.relationship_id = 'Maps to' AND r.invalid_reason IS NULL AND t.standard_concept = 'S'
            GROUP BY r.concept_id_1
        )
        SELECT c.vocabulary_id, c.concept_code, c.concept_id AS source_concept_id,
               coalesce(CASE WHEN c.standard_concept = 'S' THEN c.concept_id END, m.standard_id, 0) AS concept_id,
               coalesce(s.domain_id, c.domain_id) AS domain_id
        FROM concept c
        LEFT JOIN maps m ON m.source_id = c.concept_id
        LEFT JOIN concept s ON s.concept_id = coalesce(CASE WHEN c.standard_concept = 'S' THEN c.concept_id END, m.standard_id)
        QUALIFY row_number() OVER (PARTITION BY c.vocabulary_id, c.concept_code
                                   ORDER BY (c.standard_concept = 'S') DESC, c.invalid_reason NULLS FIRST, c.concept_id) = 1
        """
    )


def _add_unit_aliases(db: HubDatabase) -> None:
    """UCUM units as FHIR writes them (``U/L``, ``{score}``) for the OMOP unit concepts, whose codes are
    written otherwise (``[U]/L``, ``[score]``); a unit the vocabulary already spells so is kept."""
    db.execute(
        """
        INSERT INTO hm_concept_map
        SELECT 'UCUM', a.unit, c.concept_id, c.concept_id, c.domain_id
        FROM read_csv(?, header=true, all_varchar=true) a
        JOIN concept c ON c.concept_id = a.concept_id::BIGINT AND c.standard_concept = 'S'
        WHERE a.unit NOT IN (SELECT concept_code FROM hm_concept_map WHERE vocabulary_id = 'UCUM')
        """,
        [str(bundled_vocabulary_dir() / "ucum_aliases.csv")],
    )


def vocabulary_version(db: HubDatabase) -> str:
    version = db.scalar("SELECT vocabulary_version FROM vocabulary WHERE vocabulary_id = 'None'")
    return str(version) if version else "unknown"
