"""``healthmesh ingest``: load FHIR and Synthea inputs into a hub's CDM."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from healthmesh.cdm import create_hub
from healthmesh.cdm.database import is_postgres_url
from healthmesh.config import Settings, hub_keys, key_file_for
from healthmesh.ingest import IngestReport, ingest_paths, report_path_for

console = Console()
err_console = Console(stderr=True)

EXIT_REJECTED = 1


def hub_key(db: Path) -> bytes:
    """The hub's pseudonym key; says once when a new master secret is created beside the database."""
    settings = Settings()
    fresh = settings.secret_key is None and not is_postgres_url(db) and not key_file_for(db).exists()
    keys = hub_keys(settings, db)
    if fresh:
        err_console.print(
            f"[yellow]HEALTHMESH_SECRET_KEY is not set: created a random hub key in {key_file_for(db)}"
            " (keep it: pseudonyms and tokens depend on it)[/yellow]"
        )
    return keys.pseudonym


def summary_table(report: IngestReport) -> Table:
    table = Table(title=f"ingest into hub {report.hub}", show_lines=False)
    for column in ("resource type", "records", "loaded", "skipped", "rejected", "mapped"):
        table.add_column(column, justify="left" if column == "resource type" else "right")
    share = report.mapped_share()
    for name, row in sorted(report.by_type.items()):
        mapped = f"{share[name]:.1%}" if name in share and row["mapped"] else "-"
        table.add_row(name, *(f"{row[k]:,}" for k in ("records", "loaded", "skipped", "rejected")), mapped)
    table.add_row(
        "total",
        f"{report.records:,}",
        f"{report.loaded:,}",
        f"{report.skipped_count:,}",
        f"{report.rejected:,}",
        "",
    )
    return table


def ingest(
    paths: list[Path] = typer.Argument(
        ..., help="FHIR Bundle / NDJSON files, folders of them, or Synthea CSV folders."
    ),
    db: Path = typer.Option(
        ...,
        "--db",
        help="Hub database: DuckDB file (created when missing) or postgresql:// URL.",
        envvar="HEALTHMESH_DATABASE_URL",
    ),
    hub: str = typer.Option(..., "--hub", help="Hub name, e.g. gwangju."),
    strict: bool = typer.Option(
        False, "--strict", help="All or nothing: store nothing if any record is rejected."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Load inputs into the hub's OMOP CDM; every record is loaded, skipped or rejected with a reason."""
    key = hub_key(db)
    with create_hub(str(db)) as hub_db:
        with Progress(
            TextColumn("[bold]ingest[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet,
            transient=True,
        ) as progress:
            task = progress.add_task("", total=None)

            plain = not quiet and not err_console.is_terminal

            def step(done: int, total: int, name: str) -> None:
                progress.update(task, completed=done, total=total, description=name[:40])
                if plain:  # logs and pipes get one line per committed batch
                    print(f"batch {done}/{total} {name}", file=sys.stderr, flush=True)

            report = ingest_paths(hub_db, paths, hub, key, strict=strict, progress=step)
    report_file = report.write(
        Path(f"{hub}.ingest-report.json") if is_postgres_url(db) else report_path_for(db)
    )
    console.print(summary_table(report))
    rate = f"{report.records / report.seconds:,.0f} records/s" if report.seconds else ""
    console.print(f"{report.seconds:.1f} s, {rate}; report: {report_file}")
    if report.redacted:
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in report.redacted_by_kind().items())
        console.print(
            f"redacted {report.redacted:,} identifier-looking values ({kinds}): not stored; counted by type"
            " and field in the report"
        )
    for item in report.rejections[:10]:
        where = f"entry {item['entry']}" if "entry" in item else f"record {item.get('record')}"
        err_console.print(
            f"[red]rejected[/red] {item.get('file', '')} {where}: {item['reason']}", highlight=False
        )
    if report.rejected > 10:
        err_console.print(f"... and {report.rejected - 10:,} more rejections in the report")
    if report.rejected:
        if strict:
            err_console.print(
                f"[red]--strict: {report.rejected:,} records rejected, nothing was stored[/red]"
            )
        raise typer.Exit(EXIT_REJECTED)
