"""``healthmesh hub``: run a hub's web service, and mint tokens or list clients for it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from healthmesh.errors import ConfigError, FederationError

app = typer.Typer(help="The hub service: FastAPI over the hub's CDM, with tokens, roles and an audit log.",
                  no_args_is_help=True)  # fmt: skip
console = Console()

HubOption = Annotated[str, typer.Option("--hub", help="hub name (gwangju, gyeonggi, busan, ...)")]
DbOption = Annotated[Path, typer.Option("--db", help="the hub's CDM (DuckDB file)")]


def _models(values: list[str]) -> dict[str, Path]:
    models = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(
                f"--model takes NAME=DIR (a model folder from `healthmesh risk train`); got {value!r}"
            )
        if not Path(folder).is_dir():
            raise ConfigError(f"--model {name}: no model folder at {folder}")
        models[name] = Path(folder)
    return models


@app.command()
def serve(
    hub: HubOption,
    db: DbOption,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
    host: Annotated[
        str, typer.Option("--host", help="interface; loopback unless you mean to expose it")
    ] = "127.0.0.1",
    model: Annotated[list[str], typer.Option("--model", help="NAME=DIR of a trained model; repeatable")] = [],  # noqa: B006
    scorers: Annotated[
        int, typer.Option("--scorers", min=1, max=16, help="warm Bundle scorers per model")
    ] = 2,
    scoring_processes: Annotated[
        int,
        typer.Option(
            "--scoring-processes",
            min=0,
            max=64,
            help="worker processes scoring clean Bundles in memory (0: in the service process); "
            "about one per core when scoring is the load",
        ),
    ] = 0,
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
    ssl_certfile: Annotated[
        Path | None, typer.Option("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option("--ssl-keyfile", help="the certificate's key (PEM)")
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", help="the coordinator's URL: take part in its studies")
    ] = None,
    network_credential_file: Annotated[
        Path | None,
        typer.Option(
            "--network-credential-file", help="the hub's credential from `network add-hub` (0600 file)"
        ),
    ] = None,
    network_ca: Annotated[
        Path | None,
        typer.Option("--network-ca", help="CA certificate (PEM) the coordinator's HTTPS is checked with"),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="the hub policy (TOML); default: the one shipped")
    ] = None,
) -> None:
    """Serve the hub's API (OpenAPI at /docs) until Ctrl-C; with --network, also the network's studies."""
    import uvicorn

    os.umask(0o077)  # the database's WAL, reports and logs it writes are private (also when not run via main)

    from healthmesh.api import config_from_settings, create_app

    if network is None and (network_credential_file is not None or network_ca is not None):
        raise ConfigError("--network-credential-file and --network-ca need --network URL")
    if not str(db).startswith("postgresql:") and not db.exists():
        raise ConfigError(
            f"no hub database at {db}; create one with `healthmesh cdm init --db {db}` or ingest"
        )
    config = config_from_settings(
        hub, db, _models(model), scorer_pool=scorers, scoring_processes=scoring_processes
    )
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("give --ssl-certfile and --ssl-keyfile together (HTTPS), or neither")
    for tls_file in (ssl_certfile, ssl_keyfile):
        if tls_file is not None and not tls_file.is_file():
            raise ConfigError(f"no TLS file at {tls_file}")
    credential = (
        _network_credential(network, network_credential_file, network_ca, policy) if network else None
    )
    application = create_app(config)
    if network is not None and credential is not None:
        from healthmesh.api.agent import HubAgent, attach_agent

        attach_agent(
            application,
            HubAgent(application.state.hub, network, credential, policy_path=policy, ca=network_ca),
        )
        console.print(f"hub agent: studies from {network}", highlight=False)
    scheme = "https" if ssl_certfile else "http"
    console.print(
        f"hub {hub}: {scheme}://{host}:{port} (OpenAPI at /docs); tokens at POST /token", highlight=False
    )
    uvicorn.run(
        application, host=host, port=port, log_level=log_level, access_log=False,
        # The audit names the peer that connected: no X-Forwarded-For from a loopback caller may rename it.
        proxy_headers=False, forwarded_allow_ips="",
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )  # fmt: skip


def _network_credential(url: str, credential_file: Path | None, ca: Path | None, policy: Path | None) -> str:
    """The hub's network credential, once the --network options are checked (before anything opens)."""
    from healthmesh.policy import load_policy

    credential = os.environ.get("HEALTHMESH_NETWORK_CREDENTIAL", "")
    if credential_file is not None:
        try:
            credential = credential_file.read_text().strip()
        except OSError as error:
            raise ConfigError(f"--network-credential-file {credential_file}: {error.strerror}") from None
    if not credential:
        raise ConfigError(
            "--network needs the hub's credential: --network-credential-file PATH or HEALTHMESH_NETWORK_CREDENTIAL"
        )
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--network {url!r}: give the coordinator's URL (https://host:port)")
    if ca is not None and not ca.is_file():
        raise ConfigError(f"--network-ca: no file at {ca}")
    load_policy(policy)  # a bad policy file: one line now, not a failure at the first study
    return credential


def _admin_call(
    hub: str, db: Path, url: str, method: str, path: str, body: dict[str, str] | None = None
) -> object:
    """Call the running hub service as its admin (a token signed with the hub's keys, as `hub token`)."""
    import httpx

    from healthmesh.api import TokenIssuer, config_from_settings
    from healthmesh.api.tokenstate import token_state_for

    config = config_from_settings(hub, db)
    token = TokenIssuer(config.keys, hub, config.clients, 300, token_state_for(db)).issue(
        "hub-admin", ("admin",)
    )
    try:
        response = httpx.request(
            method,
            f"{url.rstrip('/')}{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )
    except httpx.HTTPError as error:
        raise ConfigError(f"the hub service at {url} cannot be reached ({error})") from None
    if not response.is_success:
        try:
            reason = response.json().get("detail", response.text)
        except ValueError:
            reason = response.text
        raise FederationError(f"hub {hub}: {reason} (HTTP {response.status_code})")
    return response.json()


UrlOption = Annotated[str, typer.Option("--url", help="the running hub service (hub serve --network)")]


@app.command()
def waiting(hub: HubOption, db: DbOption, url: UrlOption) -> None:
    """The network's studies waiting at this hub for its admin."""
    studies = _admin_call(hub, db, url, "GET", "/network/studies")
    table = Table("study", "kind", "researcher", "purpose", "note", title=f"studies waiting at hub {hub}")
    for study in studies:  # type: ignore[attr-defined]
        table.add_row(
            study["study_id"], study["kind"], study["researcher"], study["purpose"], study["note"] or ""
        )
    console.print(table)


@app.command()
def approve(
    hub: HubOption,
    db: DbOption,
    url: UrlOption,
    study: Annotated[str, typer.Option("--study", help="the study's id")],
) -> None:
    """Approve a study held for this hub's admin: it runs now, its released answer goes to the network."""
    _admin_call(hub, db, url, "POST", f"/network/studies/{study}/approve")
    console.print(f"hub {hub}: study {study} approved; it runs now", highlight=False)


@app.command()
def refuse(
    hub: HubOption,
    db: DbOption,
    url: UrlOption,
    study: Annotated[str, typer.Option("--study", help="the study's id")],
    reason: Annotated[str, typer.Option("--reason", help="why (the researcher reads it)")],
) -> None:
    """Refuse a study waiting at this hub, with the reason."""
    _admin_call(hub, db, url, "POST", f"/network/studies/{study}/refuse", {"reason": reason})
    console.print(f"hub {hub}: study {study} refused", highlight=False)


@app.command()
def token(
    hub: HubOption,
    db: DbOption,
    role: Annotated[
        str, typer.Option("--role", help="admin, clinician, peer-hub, public-health or researcher")
    ],
    subject: Annotated[
        str | None, typer.Option("--subject", help="who the token names; default the role")
    ] = None,
    ttl: Annotated[int, typer.Option("--ttl", help="lifetime in seconds (60 s to 24 h)")] = 3600,
) -> None:
    """Print a bearer token for ROLE, signed with the hub's current token key (needs the hub's secret)."""
    from healthmesh.api import TokenIssuer, config_from_settings
    from healthmesh.api.tokenstate import check_ttl, token_state_for

    check_ttl(ttl)
    config = config_from_settings(hub, db)
    issuer = TokenIssuer(config.keys, hub, config.clients, ttl, token_state_for(db))
    typer.echo(issuer.issue(subject or role, (role,)))


@app.command("rotate-token-key")
def rotate_token_key(hub: HubOption, db: DbOption) -> None:
    """Start a new token-key generation: every token issued before stops working (no person is re-keyed)."""
    from healthmesh.api import config_from_settings
    from healthmesh.api.tokenstate import token_state_for

    config_from_settings(hub, db)  # the hub's keys must be at hand, as for `hub token`
    generation = token_state_for(db).rotate()
    console.print(f"hub {hub}: token key generation {generation}; older tokens are refused", highlight=False)


@app.command()
def revoke(
    hub: HubOption,
    db: DbOption,
    jti: Annotated[str | None, typer.Option("--jti", help="the id of the token to revoke")] = None,
    kid: Annotated[
        int | None, typer.Option("--kid", help="a key generation: revokes every token it signed")
    ] = None,
) -> None:
    """Revoke one token (--jti) or every token of a key generation (--kid)."""
    from healthmesh.api.tokenstate import token_state_for

    if (jti is None) == (kid is None):
        raise ConfigError("give exactly one of --jti ID or --kid GENERATION")
    state = token_state_for(db)
    if jti is not None:
        if not 8 <= len(jti) <= 200:
            raise ConfigError(f"--jti {jti[:40]!r} is not a token id (see the token's `jti` claim)")
        state.revoke(jti)
        console.print(f"hub {hub}: token {jti} revoked", highlight=False)
        return
    current = state.current().generation
    if kid is not None and kid < current:
        console.print(f"hub {hub}: generation {kid} is retired already (current: {current})", highlight=False)
    elif kid == current:
        console.print(
            f"hub {hub}: token key generation {state.rotate()}; generation {kid} revoked", highlight=False
        )
    else:
        raise ConfigError(f"--kid {kid}: no such generation (current: {current})")


@app.command()
def clients(hub: HubOption, db: DbOption) -> None:
    """List the clients of the token endpoint, with their roles and secrets (keep them safe)."""
    from healthmesh.api import config_from_settings

    config = config_from_settings(hub, db)
    table = Table("client_id", "roles", "client_secret", title=f"clients of hub {hub}")
    for client in config.clients.values():
        table.add_row(client.client_id, ",".join(client.roles), client.secret)
    console.print(table)
