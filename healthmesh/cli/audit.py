"""``healthmesh audit``: check the hub's audit log for tampering (its hash chain)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from healthmesh.errors import CDMError

app = typer.Typer(help="The hub's audit log: verify its hash chain.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

# Exit code of a broken chain: distinct from every error class's (healthmesh.errors.EXIT_CODES).
BROKEN_CHAIN_EXIT = 20


@app.command()
def verify(
    db: Annotated[Path, typer.Option("--db", help="the hub database (DuckDB file or postgresql:// URL)")],
    hub: Annotated[str | None, typer.Option("--hub", help="hub name, for the report")] = None,
) -> None:
    """Recompute the audit log's hash chain: exit 0 with the entry count, or name the first broken entry."""
    from healthmesh.api.audit import AUDIT_TABLE, BrokenChain, verify_chain
    from healthmesh.cdm import connect
    from healthmesh.cdm.database import is_postgres_url

    if not is_postgres_url(db) and not db.exists():
        raise CDMError(f"no hub database at {db}")
    with connect(db, read_only=not is_postgres_url(db)) as database:
        if AUDIT_TABLE not in database.tables() and database.dialect != "postgres":
            raise CDMError(f"{db} has no audit log (table {AUDIT_TABLE}); has a hub service run on it?")
        try:
            report = verify_chain(database)
        except BrokenChain as broken:
            err_console.print(f"[red]audit chain broken:[/red] {broken}", highlight=False, soft_wrap=True)
            raise typer.Exit(BROKEN_CHAIN_EXIT) from None
    where = f"hub {hub}: " if hub else ""
    legacy = f" (and {report.unchained} older entries written before the chain)" if report.unchained else ""
    console.print(
        f"{where}{report.entries} audit entries, chain holds{legacy}; "
        f"head entry {report.head.entry_id} {report.head.entry_hash}",
        highlight=False,
        soft_wrap=True,
    )
