"""A Flower network as real processes: one SuperLink (the coordinator) and one SuperNode per hub.

Everything runs as plain processes (no Docker): ``flower-superlink`` serves its Fleet, Control and
Runtime APIs on one port; each ``flower-supernode`` gets its own Runtime port and a node config that
points at its hub's data (``table=FILE`` or ``db=PATH``). Runs are submitted with ``flwr run APP NAME``
against a ``config.toml`` kept in the network's own ``FLWR_HOME`` (never the user's home). The
ServerApp reads its job from a JSON file and writes its result next to it: the coordinator holds
both, no hub does. ``stop()`` ends every process group this object started, also on error or Ctrl-C
(use it as a context manager).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from healthmesh.errors import FederationError
from healthmesh.federation.app_files import write_flower_app
from healthmesh.federation.tls import TlsFiles, make_self_signed_tls

__all__ = ["FlowerNetwork", "NodeProcess", "free_port"]

NodeConfigValue = str | int | float | bool


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _toml_value(value: NodeConfigValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _node_config_arg(config: Mapping[str, NodeConfigValue]) -> str:
    for key, value in config.items():
        if " " in key or "=" in key:
            raise FederationError(f"node config key {key!r} may not contain spaces or '='; rename it")
        if isinstance(value, str) and (" " in value or '"' in value):
            raise FederationError(
                f"node config value {value!r} of {key!r} contains a space or a quote, which "
                "flower-supernode --node-config cannot carry; use a path without spaces"
            )
    return " ".join(f"{key}={_toml_value(value)}" for key, value in config.items())


@dataclass
class NodeProcess:
    """One started process and where its log goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    config: dict[str, NodeConfigValue] = field(default_factory=dict)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class FlowerNetwork:
    """A SuperLink and one SuperNode per site on this machine; submits runs and stops everything.

    ``sites`` maps a site (hub) name to its node config, for example ``{"gwangju": {"db": "/x.duckdb"}}``.
    The name itself is added as ``site``. With ``tls=True`` (the default) a CA and server certificate
    are made under ``workdir/tls`` and every connection (SuperNodes and ``flwr``) verifies them.
    """

    def __init__(
        self,
        workdir: Path,
        sites: Mapping[str, Mapping[str, NodeConfigValue]],
        *,
        tls: bool = True,
        host: str = "127.0.0.1",
        startup_timeout: float = 90.0,
    ) -> None:
        if not sites:
            raise FederationError("a network needs at least one site; got none")
        self.workdir = Path(workdir).resolve()
        self.sites = {name: {**dict(config), "site": name} for name, config in sites.items()}
        self.tls = tls
        self.host = host
        self.startup_timeout = startup_timeout
        self.flwr_home = self.workdir / "flwr-home"
        self.superlink: NodeProcess | None = None
        self.supernodes: list[NodeProcess] = []
        self.tls_files: TlsFiles | None = None
        self.port = 0
        self.bytes_log: list[int] = []
        self._bin = Path(sys.executable).parent

    # -- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> FlowerNetwork:
        if not self.running:  # start_hub_network() hands over a network that is already up
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["FLWR_HOME"] = str(self.flwr_home)
        # The SuperLink and SuperNodes spawn flower-superexec / flwr-serverapp by name.
        env["PATH"] = f"{self._bin}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _executable(self, name: str) -> str:
        path = self._bin / name
        if not path.exists():
            raise FederationError(
                f"{name} not found next to {sys.executable}; install flwr 1.42 in this environment"
            )
        return str(path)

    def _spawn(self, name: str, args: list[str], port: int) -> NodeProcess:
        log_path = self.workdir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handle: IO[bytes] = log_path.open("wb")
        # A new session per process, so that stop() can end it together with the children it spawns.
        process = subprocess.Popen(
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._env(),
            cwd=self.workdir,
            start_new_session=True,
        )
        handle.close()
        return NodeProcess(name=name, process=process, log_path=log_path, port=port)

    def start(self) -> FlowerNetwork:
        """Start the SuperLink and the SuperNodes and wait until every SuperNode has connected."""
        if self.superlink is not None or self.supernodes:
            raise FederationError("this network is already started; stop() it before starting it again")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        try:
            self._start_superlink()
            self._write_cli_config()
            for name, config in self.sites.items():
                self._start_supernode(name, config)
            self._wait_for_supernodes()
        except BaseException:
            self.stop()
            raise
        return self

    def _security_args(self) -> list[str]:
        if not self.tls:
            return ["--insecure"]
        if self.tls_files is None:
            self.tls_files = make_self_signed_tls(self.workdir / "tls", hosts=(self.host, "localhost"))
        return [
            "--ssl-certfile",
            str(self.tls_files.server_cert),
            "--ssl-keyfile",
            str(self.tls_files.server_key),
            "--ssl-ca-certfile",
            str(self.tls_files.ca_cert),
        ]

    def _start_superlink(self) -> None:
        self.port = free_port(self.host)
        args = [
            self._executable("flower-superlink"),
            *self._security_args(),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--disable-runtime-dependency-installation",
        ]
        self.superlink = self._spawn("superlink", args, self.port)
        self._wait_for(self.superlink, lambda: self._port_open(self.port), "accept connections")

    def _start_supernode(self, name: str, config: Mapping[str, NodeConfigValue]) -> None:
        port = free_port(self.host)
        if self.tls:
            assert self.tls_files is not None
            security = ["--root-certificates", str(self.tls_files.ca_cert)]
        else:
            security = ["--insecure"]
        args = [
            self._executable("flower-supernode"),
            *security,
            "--superlink",
            f"{self.host}:{self.port}",
            "--port",
            str(port),
            "--node-config",
            _node_config_arg({**config, "cache-dir": str(self.workdir / "cache" / name)}),
        ]
        node = self._spawn(f"supernode-{name}", args, port)
        node.config = dict(config)
        self.supernodes.append(node)

    def _wait_for_supernodes(self) -> None:
        for node in self.supernodes:
            self._wait_for(node, lambda n=node: "SuperNode ID" in n.log_text(), "connect to the SuperLink")  # type: ignore[misc]

    def _port_open(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((self.host, port)) == 0

    def _wait_for(self, node: NodeProcess, ready: Any, what: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise FederationError(
                    f"{node.name} exited with code {node.process.returncode} before it could {what}; "
                    f"last log lines:\n{_tail(node.log_text())}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise FederationError(
            f"{node.name} did not {what} within {self.startup_timeout:.0f} s; see {node.log_path}"
        )

    def stop(self) -> None:
        """Stop every process this network started (SIGTERM to each group, SIGKILL after 10 s)."""
        nodes = [*self.supernodes, *([self.superlink] if self.superlink else [])]
        for node in nodes:
            _signal_group(node.process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for node in nodes:
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(node.process, signal.SIGKILL)
                node.process.wait(timeout=5)
            # Children (serverapp / clientapp) may outlive their parent: end the rest of the group.
            _signal_group(node.process, signal.SIGKILL)
        self.supernodes = []
        self.superlink = None
        # The hubs' row caches (see sitedata.load_site_data) do not outlive the network.
        shutil.rmtree(self.workdir / "cache", ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.superlink is not None and self.superlink.process.poll() is None

    # -- runs ----------------------------------------------------------------------------------------

    def _write_cli_config(self) -> None:
        lines = [
            "[superlink]",
            'default = "healthmesh"',
            "",
            "[superlink.healthmesh]",
            f'address = "{self.host}:{self.port}"',
        ]
        if self.tls:
            assert self.tls_files is not None
            lines.append(f"root-certificates = {json.dumps(str(self.tls_files.ca_cert))}")
        else:
            lines.append("insecure = true")
        (self.flwr_home / "config.toml").write_text("\n".join(lines) + "\n")

    def run(self, job: Mapping[str, Any], timeout: float = 600.0) -> dict[str, Any]:
        """Submit one run of the healthmesh ServerApp with ``job`` and return what it wrote back.

        ``job`` is a JSON-able dict with at least ``task``; the number of SuperNodes is added.
        Raises FederationError when the run fails or no result arrives within ``timeout`` seconds.
        """
        if not self.running:
            raise FederationError("the network is not running; start() it before submitting a run")
        run_dir = self.workdir / "runs" / uuid.uuid4().hex[:12]
        run_dir.mkdir(parents=True)
        job_file, result_file = run_dir / "job.json", run_dir / "result.json"
        job_file.write_text(
            json.dumps({**job, "num-nodes": len(self.sites), "result-file": str(result_file)})
        )
        app_dir = write_flower_app(self.workdir / "app")
        log_path = run_dir / "flwr-run.log"
        args = [
            self._executable("flwr"),
            "run",
            str(app_dir),
            "healthmesh",
            "--stream",
            "--run-config",
            f"job-file={json.dumps(str(job_file))}",
        ]
        with log_path.open("wb") as handle:
            process = subprocess.Popen(
                args,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                cwd=run_dir,
                start_new_session=True,
            )
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
                raise FederationError(
                    f"run {job.get('task')!r} gave no result within {timeout:.0f} s; see {log_path}"
                ) from None
            except BaseException:
                _signal_group(process, signal.SIGKILL)
                raise
        if not result_file.exists():
            raise FederationError(
                f"run {job.get('task')!r} ended without a result (flwr exit code {process.returncode}); "
                f"last log lines:\n{_tail(log_path.read_text(errors='replace'))}"
            )
        result: dict[str, Any] = json.loads(result_file.read_text())
        if result.get("error"):
            raise FederationError(f"run {job.get('task')!r} failed at the coordinator: {result['error']}")
        return result


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)  # the group this process leads (start_new_session=True)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
