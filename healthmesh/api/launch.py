"""Start a hub service as a subprocess (``healthmesh demo`` and the benchmark call this)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from healthmesh.api.app import config_from_settings
from healthmesh.api.auth import ROLES, TokenIssuer
from healthmesh.api.tokenstate import token_state_for
from healthmesh.config import Settings
from healthmesh.errors import ConfigError

__all__ = ["hub_serve_command", "role_tokens", "start_hub_service", "wait_until_ready"]


def hub_serve_command(
    hub: str,
    db: Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    models: dict[str, Path] | None = None,
    scorers: int = 2,
    scoring_processes: int = 0,
) -> list[str]:
    """The command line of ``healthmesh hub serve`` for these arguments."""
    command = [sys.executable, "-m", "healthmesh", "hub", "serve", "--hub", hub, "--db", str(db),
               "--port", str(port), "--host", host, "--scorers", str(scorers),
               "--scoring-processes", str(scoring_processes)]  # fmt: skip
    for name, folder in (models or {}).items():
        command += ["--model", f"{name}={folder}"]
    return command


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout_s: float = 60.0
) -> None:
    """Poll ``url/health`` until it answers 200; ConfigError when the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ConfigError(
                f"the hub service at {url} exited with code {process.returncode} before it was ready"
            )
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ConfigError(f"the hub service at {url} did not answer within {timeout_s:.0f} s")


def start_hub_service(
    hub: str,
    db: Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    models: dict[str, Path] | None = None,
    scorers: int = 2,
    scoring_processes: int = 0,
    env: dict[str, str] | None = None,
    log_file: Path | None = None,
    timeout_s: float = 60.0,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``healthmesh hub serve`` and wait until it answers; returns the process and its base URL.

    Stop it with ``process.terminate()`` then ``process.wait()``.
    """
    # The log may name clients and paths: created private (0600) at open, whatever the caller's umask.
    output = (
        os.fdopen(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        if log_file is not None
        else subprocess.DEVNULL
    )
    process = subprocess.Popen(
        hub_serve_command(
            hub, db, port, host=host, models=models, scorers=scorers, scoring_processes=scoring_processes
        ),
        env={**os.environ, **(env or {})},
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{host}:{port}"
    try:
        wait_until_ready(url, process, timeout_s)
    except ConfigError:
        process.terminate()
        process.wait(10)
        raise
    return process, url


def role_tokens(
    hub: str, db: Path, ttl_s: int = 8 * 3600, settings: Settings | None = None
) -> dict[str, str]:
    """A bearer token for each role of ``hub`` (signed with its current token key, as the service reads it)."""
    config = config_from_settings(hub, db, settings=settings)
    issuer = TokenIssuer(config.keys, hub, config.clients, ttl_s, token_state_for(db))
    return {role: issuer.issue(role, (role,)) for role in ROLES}
