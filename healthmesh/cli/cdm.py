"""``healthmesh cdm``: create a hub's CDM, load vocabularies, or attach an existing CDM read-only."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.console import Console

from healthmesh.cdm import connect, create_hub, load_vocabulary
from healthmesh.cdm.attach import refuse_cdm_writes
from healthmesh.cdm.database import is_postgres_url
from healthmesh.errors import CDMError

app = typer.Typer(
    help="Create a hub's OMOP CDM v5.4, load vocabularies, or attach an existing CDM.", no_args_is_help=True
)
console = Console()


@app.command("init")
def init(
    db: Path = typer.Option(
        ..., "--db", help="Hub database: DuckDB file or postgresql:// URL.", envvar="HEALTHMESH_DATABASE_URL"
    ),
    vocabulary: Path | None = typer.Option(
        None, "--vocabulary", help="Athena vocabulary folder; default: bundled subset."
    ),
) -> None:
    """Create all 39 CDM v5.4 tables and load the vocabulary."""
    _refuse_attached(db, "cdm init")
    with create_hub(str(db), str(vocabulary) if vocabulary else None) as hub:
        n_tables = len(hub.tables())
        n_concepts = hub.scalar("SELECT count(*) FROM concept")
    console.print(f"CDM v5.4 ready at {db}: {n_tables} tables, {n_concepts:,} concepts")


@app.command("vocab")
def vocab(
    db: Path = typer.Option(
        ..., "--db", help="Hub database: DuckDB file or postgresql:// URL.", envvar="HEALTHMESH_DATABASE_URL"
    ),
    path: Path = typer.Option(..., "--path", help="Folder of Athena or CDM-form vocabulary files."),
) -> None:
    """Replace the hub's vocabulary with the files in PATH."""
    with connect(db) as hub:
        refuse_cdm_writes(hub, "cdm vocab")
        if hub.dialect == "postgres":  # read in a scratch DuckDB, copied over
            from healthmesh.cdm.postgres import load_vocabulary_postgres

            counts = load_vocabulary_postgres(hub, path)
        else:
            counts = load_vocabulary(hub, path)
    console.print(", ".join(f"{t}: {n:,}" for t, n in counts.items()))


def _refuse_attached(db: Path, verb: str) -> None:
    if not is_postgres_url(db) and not Path(db).exists():
        return  # a new hub
    with connect(db) as hub:
        refuse_cdm_writes(hub, verb)


@app.command("attach")
def attach(
    cdm: str | None = typer.Option(
        None,
        "--cdm",
        help="The existing CDM: a DuckDB file, or (PostgreSQL) the hub's own database URL (the default).",
    ),
    db: Path = typer.Option(
        ...,
        "--db",
        help="The hub's own database: a new DuckDB file, or a postgresql:// URL (its schema main).",
        envvar="HEALTHMESH_DATABASE_URL",
    ),
    cdm_schema: str | None = typer.Option(
        None, "--cdm-schema", help="Schema of the CDM tables (default: main on DuckDB, public on PostgreSQL)."
    ),
    vocab_schema: str | None = typer.Option(
        None, "--vocab-schema", help="Schema of the vocabulary tables (default: the CDM schema)."
    ),
    results_schema: str | None = typer.Option(
        None, "--results-schema", help="Schema of cohort tables (default: the CDM schema); only read."
    ),
) -> None:
    """Attach an existing OMOP CDM v5.3/v5.4 read-only: every verb reads it, none writes it."""
    from healthmesh.cdm.attach import Attachment, attach_cdm

    postgres = is_postgres_url(db)
    schema = cdm_schema or ("public" if postgres else "main")
    for name in (schema, vocab_schema, results_schema):
        if name is not None and not _IDENTIFIER.match(name):
            raise CDMError(f"schema name {name!r} is not a plain SQL identifier (letters, digits, _)")
    if postgres:
        source = _same_postgres_database(str(db), cdm)
    else:
        if cdm is None or is_postgres_url(cdm):
            raise CDMError("a DuckDB hub attaches a DuckDB CDM file: give --cdm PATH")
        if not Path(cdm).is_file():
            raise CDMError(f"no CDM file at {cdm}")
        source = str(Path(cdm).resolve())
    attachment = Attachment(
        cdm=source,
        cdm_schema=schema,
        vocab_schema=vocab_schema or schema,
        results_schema=results_schema or schema,
    )
    with connect(db) as hub:
        attach_cdm(hub, attachment)
        persons = hub.scalar("SELECT count(*) FROM person")
    console.print(f"attached {attachment.describe()} to {db}: {persons:,} persons, read-only")
    if attachment.empty_tables:
        console.print(f"  tables the CDM lacks (read as empty): {', '.join(attachment.empty_tables)}")
    if attachment.renamed_columns:
        console.print(
            f"  CDM v5.3 columns read under their v5.4 names: {', '.join(attachment.renamed_columns)}"
        )


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _same_postgres_database(hub_url: str, cdm: str | None) -> str:
    """PostgreSQL reads across schemas, not databases: the CDM must be in the hub's database."""
    from healthmesh.cdm.postgres import normalise_url, redact_url

    hub_url = normalise_url(hub_url)
    if cdm is not None:
        if not is_postgres_url(cdm):
            raise CDMError("a PostgreSQL hub attaches schemas of its own database: --cdm takes that URL")
        if _database_of(normalise_url(cdm)) != _database_of(hub_url):
            raise CDMError(
                "the CDM must be in the hub's PostgreSQL database (a query cannot join two databases); "
                "give the hub a schema main in the CDM's database"
            )
    return redact_url(hub_url)


def _database_of(url: str) -> tuple[str | None, str | None, str | None]:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    return (str(info.get("host")), str(info.get("port")), str(info.get("dbname")))
