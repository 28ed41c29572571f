"""``healthmesh privacy``: re-identification risk of extracts and direct-identifier scans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from healthmesh.cdm import connect
from healthmesh.errors import PrivacyError

if TYPE_CHECKING:  # pandas loads only when a privacy verb runs
    import pandas as pd

__all__ = ["app"]

app = typer.Typer(
    help="Re-identification risk (k-anonymity, l-diversity) and identifier scans.", no_args_is_help=True
)
console = Console()


def _read_extract(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise PrivacyError(f"no extract at {path}; pass a CSV or Parquet file")
    import pandas as pd

    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (ValueError, OSError) as error:
        raise PrivacyError(f"cannot read extract {path}: {error}") from error


@app.command("check")
def check(
    db: Path | None = typer.Option(None, "--db", help="Hub database: assess its person extract."),
    input_file: Path | None = typer.Option(None, "--input", help="An extract file (CSV or Parquet) instead."),
    qi: str = typer.Option("age,sex,region", "--qi", help="Quasi-identifiers, comma-separated."),
    sensitive: str | None = typer.Option(
        "diagnosis", "--sensitive", help="Sensitive attribute for l-diversity."
    ),
    k: int | None = typer.Option(
        None, "--k", help="Generalise and suppress until every class has >= K records."
    ),
    l_div: int | None = typer.Option(
        None, "--l", help="Also require >= L distinct sensitive values per class."
    ),
    max_suppression: float = typer.Option(
        0.05, "--max-suppression", help="Largest share of records removed."
    ),
    out: Path | None = typer.Option(None, "--out", help="Where to write the k-anonymous extract (CSV)."),
) -> None:
    """Report k-anonymity, l-diversity and records at risk; with --k write a safe extract."""
    from healthmesh.privacy.kanonymity import anonymize, person_extract, risk_report

    if (db is None) == (input_file is None):
        raise PrivacyError("pass exactly one of --db PATH or --input FILE")
    if db is not None:
        with connect(db, read_only=True) as hub:
            frame = person_extract(hub)
    else:
        assert input_file is not None
        frame = _read_extract(input_file)
    qis = [c.strip() for c in qi.split(",") if c.strip()]
    sensitive_col = sensitive if sensitive and sensitive in frame.columns else None
    before = risk_report(frame, qis, sensitive_col, k or 5)
    console.print(f"before: {json.dumps(before.to_dict())}")
    if k is None:
        return
    released, after = anonymize(frame, qis, k, sensitive_col, l_div, max_suppression)
    target = out or Path(f"extract_k{k}.csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    released.to_csv(target, index=False)
    console.print(f"after:  {json.dumps(after.to_dict())}")
    console.print(f"k-anonymous extract ({len(released)} records): {target}")


@app.command("scan")
def scan(
    db: Path | None = typer.Option(None, "--db", help="Hub database: scan its text columns."),
    file: Path | None = typer.Option(None, "--file", help="An export file to scan instead."),
    out: Path | None = typer.Option(None, "--out", help="Write the findings (masked) as JSON here."),
) -> None:
    """Find direct identifiers; exit code 1 when any is found."""
    from healthmesh.privacy.scan import scan_database, scan_file, write_report

    if (db is None) == (file is None):
        raise PrivacyError("pass exactly one of --db PATH or --file PATH")
    if db is not None:
        with connect(db, read_only=True) as hub:
            report = scan_database(hub)
    else:
        assert file is not None
        report = scan_file(file)
    document = report.to_dict()
    for location in document["locations"]:
        console.print(
            f"{location['location']}: {location['matches']} e.g. {location['examples']}", highlight=False
        )
    if out is not None:
        write_report(report, out)
    console.print(
        f"{report.total} identifier matches in {report.scanned_values} candidate values of {report.source}"
    )
    if report.total:
        raise typer.Exit(1)
