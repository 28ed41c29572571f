"""Models, attacked as someone who can write into a hub's model folder (or hand it one) would.

The attacker rewrites ``model.lgb.txt`` so that LightGBM's own parser hangs or aborts, and makes
everything consistent again (the digest in ``manifest.json`` and in ``registry.json``); or brings a
model the registry never listed. The hub is `healthmesh hub serve` in a subprocess, production mode.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from healthmesh.api.launch import hub_serve_command
from healthmesh.cdm import create_hub
from healthmesh.errors import ModelError
from healthmesh.hubkeys import HubKeys
from healthmesh.privacy.release import Release
from healthmesh.risk.modelfile import BOOSTER_FILE, model_digest
from healthmesh.risk.treecheck import check_tree_model, trial_load

HUB = "gyeonggi"
SECRET = "7c2e9a4f1d6b8e3a0c5f2d9b4e7a1c6f8b3d0e5a"
PACKAGE = Path(__file__).resolve().parents[2] / "healthmesh"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A hub database and a LightGBM model trained and registered on it (the hub's own registry)."""
    from healthmesh.risk import train_task
    from healthmesh.risk.toycdm import populate_toy_cdm

    folder = tmp_path_factory.mktemp("model-hub")
    db_path = folder / "hub.duckdb"
    with create_hub(str(db_path)) as db:
        populate_toy_cdm(db, 1200, seed=5)
        release = Release(HubKeys(SECRET.encode()).release, 5)
        train_task(db, "t2dm-3y", folder / "models" / "t2dm", release=release, hub=HUB, models=["lightgbm"])
    assert (folder / "models" / "t2dm" / BOOSTER_FILE).is_file()
    return db_path, folder / "models" / "t2dm"


def _consistent_copy(model: Path, target: Path, booster_text: str) -> Path:
    """A copy of ``model`` with a new booster and every digest made to match it (manifest and registry)."""
    shutil.copytree(model, target)
    (target / BOOSTER_FILE).write_text(booster_text)
    digest = model_digest(target)
    (target / "manifest.json").write_text(json.dumps({"format": "healthmesh-risk-model/1", "sha256": digest}))
    registry = json.loads((model.parent / "registry.json").read_text())
    model_id = json.loads((target / "model.json").read_text())["meta"]["model_id"]
    for entry in registry["models"]:
        if entry["model_id"] == model_id:
            entry["sha256"] = digest
            entry["path"] = target.name
    (target.parent / "registry.json").write_text(json.dumps(registry))
    return target


def _serve(db: Path, model: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHMESH_")}
    started = time.monotonic()
    done = subprocess.run(
        hub_serve_command(HUB, db, port, models={"t2dm": model}),
        capture_output=True,
        text=True,
        env=env | {"HEALTHMESH_SECRET_KEY": SECRET},
        timeout=120,
    )
    return done, time.monotonic() - started


def _cycle(text: str) -> str:
    """The first tree's second node points back at the root: prediction would walk in a circle."""
    start = text.index("Tree=0\n")
    line_start = text.index("left_child=", start)
    line_end = text.index("\n", line_start)
    children = text[line_start + len("left_child=") : line_end].split()
    assert len(children) >= 2, "the first tree needs two internal nodes"
    children[1] = "0"
    return text[:line_start] + "left_child=" + " ".join(children) + text[line_end:]


def _wild_sizes(text: str) -> str:
    """tree_sizes that send LightGBM's parser past the end of the text."""
    start = text.index("tree_sizes=")
    end = text.index("\n", start)
    return text[:start] + "tree_sizes=" + " ".join(["99999999"] * len(text[start:end].split())) + text[end:]


@pytest.mark.parametrize("craft", [_cycle, _wild_sizes], ids=["cycle-hangs", "sizes-abort"])
def test_a_crafted_tree_model_with_consistent_digests_is_refused_in_one_line(
    trained: tuple[Path, Path], tmp_path: Path, craft: object
) -> None:
    db, model = trained
    crafted_text = craft((model / BOOSTER_FILE).read_text())  # type: ignore[operator]
    crafted = _consistent_copy(model, tmp_path / "models" / "t2dm", crafted_text)
    done, seconds = _serve(db, crafted)
    output = done.stdout + done.stderr
    assert done.returncode == 10, output
    assert "Traceback" not in output and "model.lgb.txt" in done.stderr, output
    assert len([line for line in done.stderr.splitlines() if line.startswith("error:")]) == 1, output
    assert seconds < 60, f"refusal took {seconds:.0f} s"


def test_the_fenced_trial_stops_a_parse_that_would_hang(trained: tuple[Path, Path]) -> None:
    # Behind the structural check, the trial parse is the second fence: a hang costs its subprocess only.
    crafted = _cycle((trained[1] / BOOSTER_FILE).read_text())
    with pytest.raises(ModelError, match="not a tree"):
        check_tree_model(crafted)
    started = time.monotonic()
    with pytest.raises(ModelError, match="within 5 s"):
        trial_load(crafted, timeout_s=5)
    assert time.monotonic() - started < 15


def test_a_model_missing_from_the_registry_is_refused_despite_its_manifest(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    db, model = trained
    stray = tmp_path / "models" / "t2dm"
    shutil.copytree(model, stray)  # the manifest inside is consistent with the files
    (stray.parent / "registry.json").write_text(json.dumps({"models": []}))
    done, _ = _serve(db, stray)
    assert done.returncode == 10 and "not in registry" in done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    (stray.parent / "registry.json").unlink()  # and with no registry at all
    done, _ = _serve(db, stray)
    assert done.returncode == 10 and "registry" in done.stderr, done.stdout + done.stderr


def test_the_package_imports_no_pickle() -> None:
    banned = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in banned]
        for call in ("read_pickle", "to_pickle", "allow_pickle=True", "__import__("):
            if call in text:
                found.append(f"{path.name}: {call}")
    assert found == []
