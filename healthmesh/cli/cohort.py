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
) -> None:
    """Build the cohort on a hub and print the counts after each step (attrition)."""
    from healthmesh.cohorts import build_cohort, load_cohort  # sqlglot: loaded only by cohort verbs

    cohort = load_cohort(definition)
    with connect(db, read_only=True) as hub:
        result = build_cohort(hub, cohort)
    table = Table("step", "events", "persons", title=f"cohort {cohort.name}")
    for step in result.attrition:
        table.add_row(str(step["step"]), f"{step['events']:,}", f"{step['persons']:,}")
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
