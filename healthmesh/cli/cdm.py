"""``healthmesh cdm``: create a hub's CDM and load vocabularies."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from healthmesh.cdm import connect, create_hub, load_vocabulary

app = typer.Typer(help="Create a hub's OMOP CDM v5.4 and load vocabularies.", no_args_is_help=True)
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
        if hub.dialect == "postgres":  # read in a scratch DuckDB, copied over
            from healthmesh.cdm.postgres import load_vocabulary_postgres

            counts = load_vocabulary_postgres(hub, path)
        else:
            counts = load_vocabulary(hub, path)
    console.print(", ".join(f"{t}: {n:,}" for t, n in counts.items()))
