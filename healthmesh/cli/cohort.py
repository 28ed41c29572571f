"""``healthmesh cohort``: count a cohort definition on a hub (attrition), show its SQL, list built-ins."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from healthmesh.cdm import connect

app = typer.Typer(help="Cohort definitions (JSON) compiled to SQL over the CDM.", no_args_is_help=True)
console = Console()


@app.command("count")
def count(
    definition: str = typer.Argument(..., help="Cohort definition JSON file, or a built-in name."),
    db: Path = typer.Option(
        ..., "--db", help="Hub CDM: DuckDB file or postgresql:// URL.", envvar="HEALTHMESH_DATABASE_URL"
    ),
    min_count: int | None = typer.Option(
        None, "--min-count", help="Smallest count published (default: HEALTHMESH_MIN_CELL_COUNT or 5)."
    ),
) -> None:
    """Build the cohort on a hub and print the persons after each step (attrition), as released.

    The counts pass the hub's release path, as ``POST /cohorts/count`` does: small ones withheld,
    the others perturbed by the key of their person set.
    """
    from healthmesh.cli.quality import hub_release
    from healthmesh.cohorts import build_cohort, load_cohort  # sqlglot: loaded only by cohort verbs
    from healthmesh.cohorts.compiler import release_attrition

    cohort = load_cohort(definition)
    release = hub_release(db, min_count)
    with connect(db, read_only=True) as hub:
        result = build_cohort(hub, cohort, cell_key=release.person_key)
    table = Table(
        "step", "persons", title=f"cohort {cohort.name} (counts below {release.min_count} withheld)"
    )
    for step in release_attrition(result.attrition, release):
        table.add_row(str(step["step"]), "withheld" if step["persons"] is None else f"{step['persons']:,}")
    console.print(table)


@app.command("sql")
def sql(
    definition: str = typer.Argument(..., help="Cohort definition JSON file, or a built-in name."),
    dialect: str = typer.Option("duckdb", "--dialect", help="SQL dialect: duckdb, postgres, ..."),
) -> None:
    """Print the SQL a definition compiles to."""
    from healthmesh.cohorts import compile_cohort, load_cohort, to_dialect

    cohort = load_cohort(definition)
    for label, table, statement in compile_cohort(cohort, "hm_cohort"):
        text = statement if dialect == "duckdb" else to_dialect(statement, dialect)
        console.print(f"-- {label}\nCREATE TEMP TABLE {table} AS {text};\n", highlight=False, soft_wrap=True)


@app.command("list")
def list_command() -> None:
    """List the built-in cohort definitions."""
    from healthmesh.cohorts import builtin_cohorts, load_cohort

    table = Table("name", "description")
    for name in builtin_cohorts():
        table.add_row(name, load_cohort(name).description)
    console.print(table)
