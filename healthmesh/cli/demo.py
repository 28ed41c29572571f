"""``healthmesh demo``: bring up the three-hub network on this machine and show all of it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from healthmesh.config import Settings, hub_keys
from healthmesh.demo import HUBS, DemoConfig, run_demo
from healthmesh.demo.pipeline import DemoResult
from healthmesh.demo.report import write_report

console = Console()


def _summary(result: DemoResult) -> Table:
    header, rows = result.hub_rows()
    table = Table(title="hubs")
    for column in header:
        table.add_column(column, justify="left" if column == "hub" else "right")
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
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
    # One strong master secret for the demo network: HEALTHMESH_SECRET_KEY, else a key file in the work dir.
    master = hub_keys(Settings(), workdir.resolve() / "keys" / "demo").master.decode()
    config = DemoConfig(workdir.resolve(), patients, seed, master, federation)
    result = run_demo(config, lambda text: console.print(text, highlight=False))
    console.print(_summary(result))
    for hub in HUBS:
        console.print(f"{hub}: reports in {result.workdir / hub / 'reports'}")
    report = write_report(result)
    console.print(f"[bold]report:[/bold] {report}")
    if serve:
        from healthmesh.demo.services import serve_hubs

        serve_hubs(result, config.master_secret, console)
