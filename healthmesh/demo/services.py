"""Keep the three hub services up after the demo: URLs, a token per role, Ctrl-C stops them all."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from rich.console import Console

from healthmesh.api.auth import ROLES, TokenIssuer, default_clients
from healthmesh.api.launch import start_hub_service
from healthmesh.api.tokenstate import token_state_for
from healthmesh.config import write_private
from healthmesh.demo.pipeline import HUBS, DemoResult
from healthmesh.demo.report import write_report
from healthmesh.federation.network import free_port
from healthmesh.hubkeys import HubKeys

__all__ = ["serve_hubs"]


def serve_hubs(result: DemoResult, master_secret: str, console: Console) -> None:
    """Start ``healthmesh hub serve`` for every hub, print how to reach them, and wait for Ctrl-C."""
    processes: list[subprocess.Popen[bytes]] = []
    services: list[dict[str, str]] = []
    models = {result.risk["task"]: result.risk["model_dir"]} if result.risk else {}
    try:
        for hub in HUBS:
            port = free_port()
            process, url = start_hub_service(
                hub,
                result.db(hub),
                port,
                models={name: Path(folder) for name, folder in models.items()},
                env={"HEALTHMESH_SECRET_KEY": master_secret},
                log_file=result.workdir / hub / "service.log",
            )
            processes.append(process)
            services.append({"hub": hub, "url": url})
        write_report(result, services)
        tokens: dict[str, dict[str, str]] = {}
        for service in services:
            keys, hub = HubKeys(master_secret.encode()), service["hub"]
            issuer = TokenIssuer(keys, hub, default_clients(keys, hub), state=token_state_for(result.db(hub)))
            tokens[service["hub"]] = {
                role: issuer.issue(f"demo-{role}", [role], ttl_s=12 * 3600) for role in ROLES
            }
        token_file = result.workdir / "tokens.json"
        token_file.unlink(missing_ok=True)
        write_private(token_file, json.dumps({"services": services, "tokens": tokens}, indent=2))
        console.print("[bold]hub services[/bold] (OpenAPI at /docs; Ctrl-C stops them all)")
        for service in services:
            console.print(f"  {service['hub']:<9} {service['url']}", highlight=False)
            for role, token in tokens[service["hub"]].items():
                console.print(f"    {role:<13} Bearer {token}", highlight=False, soft_wrap=True)
        console.print(f"tokens also in {token_file}")
        _wait_for_interrupt(processes, console)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_for_interrupt(processes: list[subprocess.Popen[bytes]], console: Console) -> None:
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop:
            dead = [p for p in processes if p.poll() is not None]
            if dead:
                console.print(
                    f"[red]a hub service exited (code {dead[0].returncode}); stopping the others[/red]"
                )
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping the hub services")
    finally:
        signal.signal(signal.SIGTERM, previous)
