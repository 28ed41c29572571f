"""``healthmesh synth``: a synthetic regional population as FHIR Bulk NDJSON."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from healthmesh.ingest.synth import generate_population

console = Console()


def synth(
    hub: str = typer.Option(
        ..., "--hub", help="Hub whose region to generate (gwangju, gyeonggi, busan, ...)."
    ),
    patients: int = typer.Option(1000, "--patients", help="Number of people."),
    seed: int = typer.Option(1, "--seed", help="Random seed; the same seed gives the same files."),
    out: Path = typer.Option(..., "--out", help="Output folder for the NDJSON files."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Generate a regional population (FHIR R4 Bulk NDJSON, one file per resource type)."""
    with Progress(
        TextColumn(f"[bold]synth[/bold] {hub}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=patients)
        counts = generate_population(
            hub, patients, seed, out, progress=lambda done, total: progress.update(task, completed=done)
        )
    total = sum(counts.values())
    console.print(
        f"{patients:,} people of {hub}: {total:,} resources in {out} ({', '.join(f'{k} {v:,}' for k, v in sorted(counts.items()))})"
    )
