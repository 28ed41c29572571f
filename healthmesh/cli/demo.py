"""``healthmesh demo``: bring up the three-hub network on this machine and show all of it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from healthmesh.cli.ingest import hub_key
from healthmesh.demo import HUBS, DemoConfig, run_demo
from healthmesh.demo.report import write_report

console = Console()


def _summary(result) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title="hubs")
    for column in (
        "hub",
        "persons",
        "visits",
        "conditions",
        "measurements",
        "drugs",
        "mapped share",
        "rejected",
    ):
        table.add_column(column, justify="left" if column == "hub" else "right")
    for hub in HUBS:
        report = result.ingest[hub]
        records = sum(r["loaded"] for t, r in report.by_type.items() if t in report.mapped_share())
        mapped = sum(r["mapped"] for t, r in report.by_type.items() if t in report.mapped_share())
        t = report.tables
        table.add_row(
            hub,
            f"{t.get('person', 0):,}",
            f"{t.get('visit_occurrence', 0):,}",
            f"{t.get('condition_occurrence', 0):,}",
            f"{t.get('measurement', 0):,}",
            f"{t.get('drug_exposure', 0):,}",
            f"{mapped / records:.1%}" if records else "-",
            f"{report.rejected:,}",
        )
    return table


def demo(
    workdir: Path = typer.Option(
        Path("work/demo"), "--workdir", help="Folder for the hubs' databases and reports."
    ),
    patients: int = typer.Option(1500, "--patients", help="People generated per hub."),
    seed: int = typer.Option(1, "--seed", help="Random seed of the populations."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Keep the hub services up until Ctrl-C."),
    federation: bool = typer.Option(True, "--federation/--no-federation", help="Run the Flower study."),
) -> None:
    """Generate, integrate, check, model, forecast and federate three hubs; write report.html."""
    config = DemoConfig(workdir.resolve(), patients, seed, hub_key(workdir / "keys" / "demo"), federation)
    result = run_demo(config, lambda text: console.print(text, highlight=False))
    console.print(_summary(result))
    for hub in HUBS:
        console.print(f"{hub}: reports in {result.workdir / hub / 'reports'}")
    report = write_report(result)
    console.print(f"[bold]report:[/bold] {report}")
    if serve:
        from healthmesh.demo.services import serve_hubs

        serve_hubs(result, config.secret_key.decode(), console)
