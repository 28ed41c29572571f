"""``healthmesh quality``, ``characterize`` and ``catalog``: know a hub's data before sharing it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from healthmesh.cdm import connect
from healthmesh.config import Settings, hub_keys
from healthmesh.privacy.release import Release

__all__ = ["catalog", "characterize", "hub_release", "quality", "register"]

console = Console()

DB = typer.Option(
    ..., "--db", help="Hub database: DuckDB file or postgresql:// URL.", envvar="HEALTHMESH_DATABASE_URL"
)
OUT = typer.Option(Path("reports"), "--out", help="Folder for the JSON, HTML and PNG outputs.")
MIN_COUNT = typer.Option(
    None, "--min-count", help="Smallest count published (default: HEALTHMESH_MIN_CELL_COUNT or 5)."
)


def hub_release(db: Path | str, min_count: int | None = None) -> Release:
    """The hub's release path: its release key (``hub_keys``) and its minimum cell count.

    Every count these commands print or write passes it: the same cell shows the same value here,
    in the hub service and in the network.
    """
    settings = Settings()
    minimum = min_count if min_count is not None else settings.min_cell_count
    return Release(hub_keys(settings, db).release, minimum)


def quality(
    db: Path = DB,
    out: Path = OUT,
    thresholds: Path | None = typer.Option(None, "--thresholds", help="Thresholds JSON; default: bundled."),
    min_count: int | None = MIN_COUNT,
    strict: bool = typer.Option(False, "--strict", help="Exit with code 8 when any check fails."),
    dqd_json: Path | None = typer.Option(
        None,
        "--dqd-json",
        help="Where to write DQD's result JSON (exact counts, for this hub's administrator only;"
        " default: OUT/dqd_results.json).",
    ),
) -> None:
    """Run our checks and OHDSI DQD v2.8's; write quality.json and quality.html (released) to OUT.

    DQD's result file (DQD's layout, exact counts) is written for the hub administrator; it is not
    for sharing: the released figures are in quality.json.
    """
    from healthmesh.errors import QualityError
    from healthmesh.quality import run_quality

    dqd_path = dqd_json or out / "dqd_results.json"
    with connect(db, read_only=True) as hub:
        report = run_quality(hub, out, thresholds, hub_release(db, min_count), dqd_file=dqd_path)
    summary = report.summary()
    table = Table("category", "checks", "passed", "failed")
    for category, cell in summary["by_category"].items():
        table.add_row(
            category, str(cell["checks_run"]), str(cell["checks_passed"]), str(cell["checks_failed"])
        )
    console.print(table)
    console.print(
        f"{summary['checks_run']} checks of {summary['check_types']} types in {report.duration_s:.1f} s: "
        f"{summary['checks_failed']} failed. Report: {out / 'quality.html'}"
    )
    dqd = report.dqd_overview()
    console.print(
        f"DQD v2.8 checks: {dqd['countTotal']}: {dqd['countStrictlyPassed']} passed, "
        f"{dqd['countThresholdFailed']} FAIL, {dqd['countNotApplicable']} not applicable, "
        f"{dqd['countIsError']} in error. DQD result file (exact counts, local): {dqd_path}"
    )
    if strict and (summary["checks_failed"] or dqd["countThresholdFailed"] or dqd["countIsError"]):
        raise QualityError(
            f"{summary['checks_failed']} checks and {dqd['countThresholdFailed'] + dqd['countIsError']}"
            f" DQD checks failed; see {out / 'quality.html'}"
        )


def characterize(
    db: Path = DB,
    out: Path = OUT,
    min_count: int | None = MIN_COUNT,
    hub: str | None = typer.Option(None, "--hub", help="Hub name recorded in the output."),
) -> None:
    """Run the characterization analyses; write characterization.json and PNG charts to OUT."""
    from healthmesh.characterize import characterize as run

    with connect(db, read_only=True) as database:
        document = run(database, out, release=hub_release(db, min_count), hub=hub)
    console.print(
        f"{len(document['analyses'])} analyses in {document['duration_s']:.1f} s "
        f"(counts below {document['min_count']} withheld): {out / 'characterization.json'}, "
        f"{len(document.get('charts', []))} charts"
    )


def catalog(
    db: Path = DB,
    hub: str = typer.Option(..., "--hub", help="Hub name (gwangju, gyeonggi, busan...)."),
    out: Path = OUT,
    min_count: int | None = MIN_COUNT,
) -> None:
    """Build the hub's catalog entry from released aggregates; write catalog.json to OUT."""
    from healthmesh.characterize import build_catalog

    with connect(db, read_only=True) as database:
        entry = build_catalog(database, hub, out, release=hub_release(db, min_count))
    console.print(
        f"catalog entry for {hub}: {entry['person_count']} persons, "
        f"{entry['quality']['pct_passed']}% of checks passed: {out / 'catalog.json'}"
    )


def register(app: typer.Typer) -> None:
    """Add the three top-level commands to the ``healthmesh`` app."""
    app.command("quality")(quality)
    app.command("characterize")(characterize)
    app.command("catalog")(catalog)
