"""Start a live network as processes on this machine: the coordinator and always-on hubs.

Used by the benchmark, the tests and (next) the demo. Each hub is ``healthmesh hub serve --network
URL``: its API and its agent in one process that owns its database. Nothing is shared between
the processes but HTTP: the hub gets its credential in a private file of its own folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from healthmesh.config import write_private
from healthmesh.errors import ConfigError
from healthmesh.federation.tls import make_self_signed_tls
from healthmesh.network.client import tls_context
from healthmesh.network.store import NetworkStore

__all__ = ["LiveNetwork", "ServedProcess", "start_live_network", "wait_until_up"]


@dataclass
class ServedProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ca: Path | None = None  # the CA its HTTPS certificate is checked with (None: plain HTTP)

    def restart(self, timeout_s: float = 90.0) -> None:
        """Stop the process and start it again with the same command (same port, same files)."""
        self.stop()
        self.process = _spawn(self.name, self.command, self.log, self.env)
        wait_until_up([self], timeout_s)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class LiveNetwork:
    """A running coordinator and hubs; ``researchers`` maps a name to its token."""

    coordinator: ServedProcess
    hubs: dict[str, ServedProcess]
    hub_dbs: dict[str, Path]
    store_path: Path
    researchers: dict[str, str] = field(default_factory=dict)
    ca: Path | None = None  # the network's own CA (the coordinator serves HTTPS with a certificate it signed)

    def stop(self) -> None:
        for hub in self.hubs.values():
            hub.stop()
        self.coordinator.stop()

    def __enter__(self) -> LiveNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _spawn(name: str, command: Sequence[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    handle = os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    with handle:
        return subprocess.Popen(list(command), stdout=handle, stderr=subprocess.STDOUT, env=dict(env))


def wait_until_up(served: Sequence[ServedProcess], timeout_s: float = 90.0) -> None:
    """Poll each ``/health`` until it answers; ConfigError (with the log's last line) if one dies."""
    deadline = time.monotonic() + timeout_s
    pending = list(served)
    while pending:
        for item in list(pending):
            if item.process.poll() is not None:
                last = (item.log.read_text(errors="replace").strip().splitlines() or ["(no output)"])[-1]
                raise ConfigError(f"{item.name} exited with code {item.process.returncode}: {last}")
            try:
                if (
                    httpx.get(f"{item.url}/health", timeout=1.0, verify=tls_context(item.ca)).status_code
                    == 200
                ):
                    pending.remove(item)
            except httpx.HTTPError:
                pass
        if pending and time.monotonic() > deadline:
            raise ConfigError(f"{pending[0].name} did not answer within {timeout_s:.0f} s")
        if pending:
            time.sleep(0.1)


def start_live_network(
    workdir: Path,
    hub_dbs: Mapping[str, Path],
    *,
    researchers: Sequence[str] = ("researcher",),
    policies: Mapping[str, Path] | None = None,
    host: str = "127.0.0.1",
    hub_hosts: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 90.0,
    tls: bool = True,
) -> LiveNetwork:
    """Register ``hub_dbs`` (name: database) and ``researchers`` in a new coordinator, start it and
    one ``hub serve --network`` per hub (``policies``: a hub's policy file), and wait until all answer.

    ``host`` is the coordinator's address; ``hub_hosts`` gives a hub an address of its own (default
    ``host``), e.g. distinct loopback addresses, so that nothing depends on sharing one.
    With ``tls`` the coordinator serves HTTPS with a certificate of a CA made for this network
    (``LiveNetwork.ca``), and the hubs check it with that CA (``--network-ca``).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHMESH_")}
    base_env.update(env or {})
    store_path = workdir / "network.sqlite"
    store = NetworkStore(store_path)
    hub_host = {name: (hub_hosts or {}).get(name, host) for name in hub_dbs}
    hub_ports = {name: _free_port(hub_host[name]) for name in hub_dbs}
    credentials = {}
    for name in hub_dbs:
        credentials[name] = store.add_hub(
            name, region=name, role="hub", base_url=f"http://{hub_host[name]}:{hub_ports[name]}"
        )
    tokens = {name: store.add_researcher(name) for name in researchers}
    store.close()
    python = [sys.executable, "-m", "healthmesh"]
    port = _free_port(host)
    serve = [*python, "network", "serve", "--db", str(store_path), "--port", str(port), "--host", host]
    ca = None
    if tls:
        files = make_self_signed_tls(workdir / "tls", hosts=(host, "localhost"))
        serve += ["--ssl-certfile", str(files.server_cert), "--ssl-keyfile", str(files.server_key)]
        ca = files.ca_cert
    log = workdir / "coordinator.log"
    coordinator = ServedProcess(
        "the coordinator",
        f"{'https' if tls else 'http'}://{host}:{port}",
        _spawn("coordinator", serve, log, base_env),
        log,
        serve,
        base_env,
        ca,
    )
    hubs: dict[str, ServedProcess] = {}
    try:
        for name, db in hub_dbs.items():
            folder = workdir / "hubs" / name
            folder.mkdir(parents=True, exist_ok=True)
            credential_file = folder / "network-credential"
            credential_file.unlink(missing_ok=True)
            write_private(credential_file, credentials[name])
            command = [
                *python, "hub", "serve", "--hub", name, "--db", str(db), "--host", hub_host[name],
                "--port", str(hub_ports[name]), "--network", coordinator.url,
                "--network-credential-file", str(credential_file),
            ]  # fmt: skip
            if ca is not None:
                command += ["--network-ca", str(ca)]
            if policies and name in policies:
                command += ["--policy", str(policies[name])]
            log = folder / "service.log"
            hubs[name] = ServedProcess(
                f"hub {name}",
                f"http://{hub_host[name]}:{hub_ports[name]}",
                _spawn(name, command, log, base_env),
                log,
                command,
                base_env,
            )
        wait_until_up([coordinator, *hubs.values()], timeout_s)
    except BaseException:
        for served in (*hubs.values(), coordinator):
            served.stop()
        raise
    return LiveNetwork(coordinator, hubs, dict(hub_dbs), store_path, tokens, ca)
