"""What the federation attack tests need: an attacker's ServerApp, an attacker's bundle, a site table.

``attack_app`` is a coordinator that ignores healthmesh's ServerApp and sends the hubs whatever
messages its job file lists (any preprocessing, any start parameters), recording every reply. Its
bundle carries no code (only ``pyproject.toml``, naming the healthmesh ClientApp), so a hub accepts
the bundle and only its policy stands between the attacker and the rows. The SuperLink's ServerApp
process imports this module as ``security.fixtures_federation``, with the tests folder on
``PYTHONPATH`` (the coordinator controls its own machine).

``write_foreign_bundle`` writes an app folder whose own ClientApp returns every row of the hub's
table (and leaves a marker file if it ever runs).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from healthmesh.federation.guard import record_dict_to_json
from healthmesh.federation.network import FlowerNetwork

attack_app = ServerApp()

ATTACK_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "attack"
version = "1.0.0"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "attacker"

[tool.flwr.app.components]
serverapp = "security.fixtures_federation:attack_app"
clientapp = "healthmesh.federation.client_app:app"

[tool.flwr.app.config]
job-file = ""
"""

FOREIGN_PYPROJECT = ATTACK_PYPROJECT.replace(
    'serverapp = "security.fixtures_federation:attack_app"', 'serverapp = "foreign:server"'
).replace('clientapp = "healthmesh.federation.client_app:app"', 'clientapp = "foreign:client"')

FOREIGN_CODE = """
import json
from pathlib import Path

import pandas as pd
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

server = ServerApp()
client = ClientApp()


@client.query("rows")
def rows(message, context):
    Path(str(context.run_config["marker-file"])).write_text("the foreign ClientApp ran at a hub")
    table = pd.read_csv(str(context.node_config["table"]))
    return Message(RecordDict({"rows": ConfigRecord({"table": table.to_json(orient="records")})}), reply_to=message)


@server.main()
def main(grid, context):
    import time
    nodes = []
    while not nodes:
        nodes = list(grid.get_node_ids())
        time.sleep(0.2)
    messages = [Message(RecordDict(), dst_node_id=n, message_type="query.rows") for n in nodes]
    replies = list(grid.send_and_receive(messages, timeout=120))
    out = [
        {"error": r.error.reason if r.has_error() else None,
         "rows": None if r.has_error() else str(r.content["rows"]["table"])}
        for r in replies
    ]
    Path(str(context.run_config["job-file"])).with_suffix(".result.json").write_text(json.dumps(out))
"""


def make_attack_table(path: Path, n: int = 240, seed: int = 7) -> Path:
    """A site with small groups: three persons aged 99, three 'rare' smokers, two missing chol."""
    rng = np.random.default_rng(seed)
    age = rng.normal(55, 9, n).round().clip(30, 85)
    age[:3] = 99
    chol = rng.normal(230, 40, n).round()
    chol[3:5] = np.nan
    smoker = rng.choice(["never", "former", "current"], n, p=[0.5, 0.3, 0.2]).astype(object)
    smoker[5:8] = "rare"
    logit = 0.08 * (age - 55) + 0.015 * (np.nan_to_num(chol, nan=230) - 230)
    target = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    pd.DataFrame({"age": age, "chol": chol, "smoker": smoker, "target": target}).to_csv(
        path, index=False, na_rep="?"
    )
    return path


@attack_app.main()
def attack_main(grid: Grid, context: Context) -> None:
    job = json.loads(Path(str(context.run_config["job-file"])).read_text())
    nodes: list[int] = []
    deadline = time.monotonic() + 120
    while len(nodes) < int(job.get("num-nodes", 1)) and time.monotonic() < deadline:
        nodes = sorted(grid.get_node_ids())
        time.sleep(0.2)
    steps: list[list[dict[str, Any]]] = []
    for step in job["messages"]:
        content = RecordDict()
        if "config" in step:
            content["config"] = ConfigRecord(dict(step["config"]))
        if "arrays" in step:
            content["arrays"] = ArrayRecord(
                {k: Array(np.asarray(v, dtype=np.float64)) for k, v in step["arrays"].items()}
            )
        messages = [Message(content=content, dst_node_id=n, message_type=step["type"]) for n in nodes]
        replies = grid.send_and_receive(messages, timeout=300)
        steps.append(
            [
                {
                    "error": r.error.reason if r.has_error() else None,
                    "content": None if r.has_error() else record_dict_to_json(r.content),
                }
                for r in replies
            ]
        )
    Path(job["result-file"]).write_text(json.dumps({"steps": steps}))


def submit(network: FlowerNetwork, app_dir: Path, run_config: dict[str, str], timeout: float = 300) -> str:
    """``flwr run`` an app folder against the network as anyone holding the CA certificate could."""
    assignments = " ".join(f"{k}={json.dumps(v)}" for k, v in run_config.items())
    done = subprocess.run(
        [
            str(Path(network._executable("flwr"))),
            "run",
            str(app_dir),
            "healthmesh",
            "--stream",
            "--run-config",
            assignments,
        ],
        capture_output=True,
        env=network.cli_env(),
        cwd=app_dir,
        timeout=timeout,
    )
    return (done.stdout + done.stderr).decode(errors="replace")


def run_attack(
    network: FlowerNetwork, workdir: Path, messages: list[dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    """Send ``messages`` from the attacker's ServerApp; every reply of every step."""
    run_dir = workdir / f"attack-{uuid.uuid4().hex[:8]}"
    app_dir = run_dir / "attack"
    app_dir.mkdir(parents=True)
    (app_dir / "pyproject.toml").write_text(ATTACK_PYPROJECT)
    job_file, result_file = run_dir / "job.json", run_dir / "result.json"
    job_file.write_text(
        json.dumps({"messages": messages, "num-nodes": len(network.sites), "result-file": str(result_file)})
    )
    log = submit(network, app_dir, {"job-file": str(job_file)})
    if not result_file.exists():
        raise AssertionError(f"the attack run wrote no result; flwr said:\n{log[-3000:]}")
    steps: list[list[dict[str, Any]]] = json.loads(result_file.read_text())["steps"]
    return steps


def write_foreign_bundle(folder: Path) -> Path:
    """An app folder whose own ClientApp returns every row of the hub's table."""
    app_dir = folder / "foreign"
    app_dir.mkdir(parents=True)
    (app_dir / "pyproject.toml").write_text(
        FOREIGN_PYPROJECT.replace('job-file = ""', 'job-file = ""\nmarker-file = ""')
    )
    (app_dir / "foreign.py").write_text(FOREIGN_CODE)
    return app_dir
