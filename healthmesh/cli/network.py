"""``healthmesh network``: run the coordinator, register hubs and researchers."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from healthmesh.errors import ConfigError

app = typer.Typer(help="The network's coordinator: hubs, researchers, studies.", no_args_is_help=True)
console = Console()

NetDbOption = Annotated[Path, typer.Option("--db", help="the coordinator's database (SQLite file)")]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ConfigError(f"{what} {value!r}: use lower-case letters, digits, '.', '_' or '-' (at most 63)")
    return value


def _store(db: Path):  # type: ignore[no-untyped-def]
    from healthmesh.network import NetworkStore

    return NetworkStore(db)


@app.command()
def serve(
    db: NetDbOption,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8700,
    host: Annotated[
        str, typer.Option("--host", help="interface; loopback unless you mean to expose it")
    ] = "127.0.0.1",
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
    ssl_certfile: Annotated[Path | None, typer.Option("--ssl-certfile", help="serve HTTPS (PEM)")] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option("--ssl-keyfile", help="the certificate's key (PEM)")
    ] = None,
) -> None:
    """Serve the coordinator's API (OpenAPI at /docs) until Ctrl-C; the database is created if new."""
    import uvicorn

    from healthmesh.network.app import create_network_app

    os.umask(0o077)
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("give --ssl-certfile and --ssl-keyfile together (HTTPS), or neither")
    application = create_network_app(db)
    scheme = "https" if ssl_certfile else "http"
    console.print(f"network coordinator: {scheme}://{host}:{port} (OpenAPI at /docs)", highlight=False)
    uvicorn.run(
        application, host=host, port=port, log_level=log_level, access_log=False,
        # The audit names the peer that connected: no X-Forwarded-For from a loopback caller may rename it.
        proxy_headers=False, forwarded_allow_ips="",
        # Long-polls hold requests open for up to 30 s: a stop should not wait for them.
        timeout_graceful_shutdown=1,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )  # fmt: skip


@app.command("add-hub")
def add_hub(
    db: NetDbOption,
    name: Annotated[str, typer.Option("--name", help="the hub's name (as its `hub serve --hub`)")],
    region: Annotated[str, typer.Option("--region")] = "unknown",
    role: Annotated[
        str, typer.Option("--role", help="its job in the network: data, r&d, demonstration, ...")
    ] = "data",
    url: Annotated[str | None, typer.Option("--url", help="the hub API's base URL, for researchers")] = None,
    node_key: Annotated[
        Path | None, typer.Option("--node-key", help="the hub's SuperNode public key (for learning)")
    ] = None,
    credential_file: Annotated[
        Path | None,
        typer.Option("--credential-file", help="write the credential here (0600) instead of printing it"),
    ] = None,
) -> None:
    """Register a hub (again: a new credential, the old one stops working); its credential is shown once."""
    from healthmesh.config import write_private

    public_key = node_key.read_text().strip() if node_key is not None else None
    credential = _store(db).add_hub(_name(name, "hub"), region, role, url, public_key)
    if credential_file is not None:
        credential_file.unlink(missing_ok=True)
        write_private(credential_file, credential)
        console.print(f"hub {name} registered; its credential is in {credential_file}", highlight=False)
    else:
        typer.echo(credential)


@app.command("add-researcher")
def add_researcher(
    db: NetDbOption,
    name: Annotated[str, typer.Option("--name")],
) -> None:
    """Register a researcher (again: a new token); prints the token once."""
    typer.echo(_store(db).add_researcher(_name(name, "researcher")))


@app.command()
def hubs(db: NetDbOption) -> None:
    """List the registered hubs."""
    table = Table("name", "region", "role", "url", "node key", title="hubs")
    for hub in _store(db).hubs():
        table.add_row(
            hub["name"], hub["region"], hub["role"], hub["base_url"] or "-", "yes" if hub["node_key"] else "-"
        )
    console.print(table)
