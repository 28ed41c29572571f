"""A Flower network as real processes: one SuperLink (the coordinator) and one SuperNode per hub.

Everything runs as plain processes (no Docker): ``flower-superlink`` serves its Fleet, Control and
Runtime APIs on one port; each ``flower-supernode`` gets its own Runtime port and a node config that
points at its hub's data (``table=FILE`` or ``db=PATH``), its policy (``policy=PATH``) and its
release key file (``key-file=PATH``).

Hub sovereignty (with TLS, the default):

- **Only registered hubs join.** The SuperLink runs with ``--enable-supernode-auth``; each hub gets
  an EC key pair in its own folder (``hubs/<site>/``, private key created 0600), its public key is
  registered with ``flwr supernode register`` before its SuperNode starts, and the SuperNode
  authenticates with the private key. A SuperNode with any other key is refused by the SuperLink.
- **Only the hub's code runs.** SuperNodes run with ``--isolation process``: they start no app
  code themselves. Each hub starts its own app process (``app_process``), which runs only the
  installed healthmesh ClientApp and refuses any bundle that carries code or names another one.
- **Scrubbed environment.** The app process gets only PATH, the Python/virtualenv variables and
  the locale: no ``HEALTHMESH_*`` secret. It signs its task requests with a secret it shares
  with its SuperNode (Flower's SuperExec auth), so no other local process can take the hub's tasks. No Flower process gets ``HEALTHMESH_*`` variables either.
  The ClientApp reads the release key from the hub's key file (0600), never the master secret.

Runs are submitted with ``flwr run APP NAME``
against a ``config.toml`` kept in the network's own ``FLWR_HOME`` (never the user's home). The
ServerApp reads its job from a JSON file and writes its result next to it: the coordinator holds
both, no hub does. ``stop()`` ends every process group this object started, also on error or Ctrl-C
(use it as a context manager).
"""

from __future__ import annotations

import json
import os
import secrets
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

__all__ = ["FlowerNetwork", "NodeProcess", "app_process_env", "free_port", "make_node_keys", "write_private"]

# What the hub's app process may see of its parent's environment (names or prefixes).
_APP_ENV_NAMES = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SYSTEMROOT")
_APP_ENV_PREFIXES = ("LC_",)


def app_process_env(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """The scrubbed environment of a hub's app process: no secrets, only what Python needs."""
    env = {k: v for k, v in environ.items() if k in _APP_ENV_NAMES or k.startswith(_APP_ENV_PREFIXES)}
    env.update({"HOME": str(home), "FLWR_HOME": str(home / "flwr"), "PYTHONUNBUFFERED": "1"})
    return env


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to a file that is private (0600) from the moment it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    return path


def make_node_keys(folder: Path) -> tuple[Path, Path]:
    """A SuperNode key pair (EC P-384, OpenSSH format): the private key 0600, and the public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    private = write_private(
        folder / "supernode.key",
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
    )
    public = folder / "supernode.pub"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return private, public


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
    app: NodeProcess | None = None  # the hub's own app process, next to its SuperNode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class FlowerNetwork:
    """A SuperLink and one SuperNode per site on this machine; submits runs and stops everything.

    ``sites`` maps a site (hub) name to its node config, for example ``{"gwangju": {"db": "/x.duckdb"}}``.
    The name itself is added as ``site``. With ``tls=True`` (the default) a CA and server certificate
    are made under ``workdir/tls`` and every connection (SuperNodes and ``flwr``) verifies them, and
    SuperNode authentication is on (it needs TLS). ``policy`` is the hub policy file every SuperNode
    gets (a site's own ``policy`` in its config wins); ``release_keys`` maps a site to its release
    key (``HubKeys(master).release``); a site without one gets a random key for this network.
    """

    def __init__(
        self,
        workdir: Path,
        sites: Mapping[str, Mapping[str, NodeConfigValue]],
        *,
        tls: bool = True,
        host: str = "127.0.0.1",
        startup_timeout: float = 90.0,
        policy: Path | None = None,
        release_keys: Mapping[str, bytes] | None = None,
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
        self.node_auth = tls  # Flower's SuperNode authentication requires TLS
        self.policy = Path(policy).resolve() if policy is not None else None
        self.release_keys = dict(release_keys or {})

    # -- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> FlowerNetwork:
        if not self.running:  # start_hub_network() hands over a network that is already up
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def hub_dir(self, site: str) -> Path:
        """The folder of a hub's own files (its keys); nothing in it is sent anywhere."""
        return self.workdir / "hubs" / site

    def cli_env(self) -> dict[str, str]:
        """The environment under which ``flwr`` talks to this network's SuperLink."""
        return self._env()

    def _env(self) -> dict[str, str]:
        # Flower's processes need none of the hub's settings, and its secrets least of all.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHMESH_")}
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

    def _spawn(self, name: str, args: list[str], port: int, env: dict[str, str] | None = None) -> NodeProcess:
        log_path = self.workdir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handle: IO[bytes] = log_path.open("wb")
        # A new session per process, so that stop() can end it together with the children it spawns.
        process = subprocess.Popen(
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._env() if env is None else env,
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
                self._start_supernode(name, self._hub_config(name, config))
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
            *(["--enable-supernode-auth"] if self.node_auth else []),
        ]
        self.superlink = self._spawn("superlink", args, self.port)
        self._wait_for(self.superlink, lambda: self._port_open(self.port), "accept connections")

    def _hub_config(self, name: str, config: Mapping[str, NodeConfigValue]) -> dict[str, NodeConfigValue]:
        """The node config with the hub's policy and its release key file (written 0600 here)."""
        hub = self.hub_dir(name)
        key = self.release_keys.get(name) or secrets.token_bytes(32)
        out: dict[str, NodeConfigValue] = {
            **config,
            "key-file": str(write_private(hub / "release.key", key.hex().encode())),
        }
        if "policy" not in out and self.policy is not None:
            out["policy"] = str(self.policy)
        return out

    def register_node(self, public_key: Path) -> None:
        """Register a hub's public key with the SuperLink (``flwr supernode register``)."""
        done = subprocess.run(
            [self._executable("flwr"), "supernode", "register", str(public_key), "healthmesh"],
            capture_output=True,
            env=self._env(),
            cwd=self.workdir,
            timeout=self.startup_timeout,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise FederationError(
                f"registering {public_key.name} with the SuperLink failed:\n{_tail(output)}"
            )

    def supernode_args(
        self, port: int, config: Mapping[str, NodeConfigValue], private_key: Path | None
    ) -> list[str]:
        """The ``flower-supernode`` command line of one hub."""
        if self.tls:
            assert self.tls_files is not None
            security = ["--root-certificates", str(self.tls_files.ca_cert)]
        else:
            security = ["--insecure"]
        if private_key is not None:
            security += ["--auth-supernode-private-key", str(private_key)]
        return [
            self._executable("flower-supernode"),
            *security,
            "--superlink",
            f"{self.host}:{self.port}",
            "--port",
            str(port),
            "--isolation",
            "process",
            "--node-config",
            _node_config_arg(config),
        ]

    def _start_supernode(self, name: str, config: Mapping[str, NodeConfigValue]) -> None:
        port = free_port(self.host)
        private_key = None
        if self.node_auth:
            private_key, public_key = make_node_keys(self.hub_dir(name))
            self.register_node(public_key)
        args = self.supernode_args(
            port, {**config, "cache-dir": str(self.workdir / "cache" / name)}, private_key
        )
        # The secret the hub's app process signs its task requests with (Flower's SuperExec auth).
        secret = write_private(self.hub_dir(name) / "superexec.secret", secrets.token_bytes(32))
        args += ["--superexec-auth-secret-file", str(secret)]
        node = self._spawn(f"supernode-{name}", args, port)
        node.config = dict(config)
        self.supernodes.append(node)
        node.app = self._start_app_process(name, node, secret)

    def _start_app_process(self, name: str, node: NodeProcess, secret: Path) -> NodeProcess:
        """The hub's own ClientApp process for this SuperNode, with a scrubbed environment."""
        args = [
            sys.executable,
            "-m",
            "healthmesh.federation.app_process",
            "--runtime-api-address",
            f"{self.host}:{node.port}",
            "--parent-pid",
            str(node.process.pid),
            "--superexec-auth-secret-file",
            str(secret),
        ]
        home = self.hub_dir(name) / "app-home"
        home.mkdir(parents=True, exist_ok=True)
        return self._spawn(f"clientapp-{name}", args, node.port, env=app_process_env(os.environ, home))

    def _wait_for_supernodes(self) -> None:
        for node in self.supernodes:
            self._wait_for(node, lambda n=node: "SuperNode ID" in n.log_text(), "connect to the SuperLink")  # type: ignore[misc]
            if node.app is not None:
                app = node.app
                self._wait_for(app, lambda a=app: "serving ClientApp tasks" in a.log_text(), "start")  # type: ignore[misc]

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
        apps = [node.app for node in self.supernodes if node.app is not None]
        nodes = [*apps, *self.supernodes, *([self.superlink] if self.superlink else [])]
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
