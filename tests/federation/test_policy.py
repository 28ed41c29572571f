"""The hub policy, the bundle check of the hub's app process, and the hub's preprocessing (no network)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from healthmesh.errors import EXIT_CODES, ConfigError
from healthmesh.federation.app_files import PYPROJECT
from healthmesh.federation.app_process import bundle_refusal
from healthmesh.federation.policing import WITHHELD_CATEGORY, hub_preprocessor, hub_rows, task_frame
from healthmesh.federation.preprocess import agree_preprocessor, summarise_columns
from healthmesh.policy import PolicyRefusal, TaskDefinition, load_policy
from healthmesh.privacy.release import Release


def _fab(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_default_policy_loads_and_allows_the_healthmesh_jobs() -> None:
    policy = load_policy()
    policy.check_operation("query.count", {"characterize": True})
    policy.check_operation("train", {})
    assert policy.task_for({"source": "table", "target": "y"}).seed == 42
    assert policy.task_for({"source": "cdm", "risk-task": "t2dm-3y", "seed": 42}).source == "cdm"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('operations = ["count", "delete"]', "operations.1"),
        ('operations = ["count"]\nmin_cell = 2', "min_cell"),
        ('operations = ["count"]\n[training]\nmax_lr = -1', "training.max_lr"),
        ('operations = ["count"]\nsurprise = 1', "surprise"),
        ("operations = [", "not valid TOML"),
    ],
)
def test_a_bad_policy_file_is_refused_in_one_line(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_policy(path)
    assert reason in str(refused.value) and "\n" not in str(refused.value)


def test_the_cli_refuses_a_bad_policy_before_starting_anything(tmp_path: Path, monkeypatch, capsys) -> None:
    from healthmesh.cli import main

    policy = tmp_path / "policy.toml"
    policy.write_text('operations = ["count", "everything"]')
    db = tmp_path / "hub.duckdb"
    db.write_bytes(b"")
    argv = ["healthmesh", "federate", "count", "--hub", f"a={db}", "--concept", "1", "--policy", str(policy)]
    argv += ["--workdir", str(tmp_path / "net")]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == EXIT_CODES[ConfigError]
    err = capsys.readouterr().err.strip()
    assert "operations.1" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "net").exists()


def test_policy_refuses_operations_tasks_and_parameters(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        'operations = ["count", "summary", "train"]\n'
        '[[tasks]]\nsource = "table"\ntarget = "outcome"\nseed = 7\n'
    )
    policy = load_policy(path)
    with pytest.raises(PolicyRefusal, match="does not allow 'characterize'"):
        policy.check_operation("query.count", {"characterize": True})
    with pytest.raises(PolicyRefusal, match="does not allow 'validate'"):
        policy.check_operation("evaluate.validate", {})
    with pytest.raises(PolicyRefusal, match="does not answer 'query.rows'"):
        policy.check_operation("query.rows", {})
    with pytest.raises(PolicyRefusal, match="accepts no training task table:other"):
        policy.task_for({"source": "table", "target": "other", "seed": 7})
    with pytest.raises(PolicyRefusal, match="seed 7"):
        policy.task_for({"source": "table", "target": "outcome", "seed": 1})
    with pytest.raises(PolicyRefusal, match="out of bounds"):
        policy.check_start_parameters([0.0, 0.0, 40.0])
    with pytest.raises(PolicyRefusal, match="learning rate"):
        policy.check_training_config(lr=50.0, local_steps=1, l2=0.0, proximal_mu=0.0)
    with pytest.raises(PolicyRefusal, match="parameters per example"):
        policy.check_params_per_example(n_params=40, n_examples=100)
    policy.check_params_per_example(n_params=33, n_examples=100)


def test_the_app_process_runs_only_a_code_free_healthmesh_bundle() -> None:
    manifest = {".info/CONTENT": "pyproject.toml,abc,1"}
    assert bundle_refusal(_fab({"pyproject.toml": PYPROJECT, **manifest})) is None
    with_code = bundle_refusal(_fab({"pyproject.toml": PYPROJECT, "evil.py": "import os", **manifest}))
    assert with_code is not None and "carries files of its own (evil.py)" in with_code
    other = PYPROJECT.replace("healthmesh.federation.client_app:app", "evil:app")
    named = bundle_refusal(_fab({"pyproject.toml": other}))
    assert named is not None and "names ClientApp 'evil:app'" in named
    assert bundle_refusal(b"not a zip") is not None


def _frame(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    smoker = rng.choice(["never", "former"], n).astype(object)
    smoker[:3] = "rare"
    return pd.DataFrame({"age": rng.normal(50, 10, n).round(), "smoker": smoker})


def test_the_hub_refuses_a_numeric_column_declared_categorical() -> None:
    X = _frame()
    spec = agree_preprocessor([summarise_columns(X)])
    attack = spec.to_dict()
    attack.update(numeric=[], fill=[], mean=[], scale=[], categorical=["age", "smoker"])
    attack["categorical_fill"] = ["50.0", *spec.categorical_fill]
    attack["categories"] = [sorted({repr(a) for a in X["age"]}), *spec.categories]
    with pytest.raises(PolicyRefusal, match="numeric column 'age' is declared categorical"):
        hub_preprocessor(type(spec).from_dict(attack), X, None, 5)
    tiny = type(spec).from_dict({**spec.to_dict(), "scale": [1e-6]})
    with pytest.raises(PolicyRefusal, match="magnify single values"):
        hub_preprocessor(tiny, X, None, 5)


def test_the_hub_does_not_encode_a_category_of_few_persons() -> None:
    X = _frame()
    spec = agree_preprocessor([summarise_columns(X)])
    spec.categories = [[*spec.categories[0], "rare"]]
    used = hub_preprocessor(spec, X, None, 5)
    assert used.categories[0][-1] == WITHHELD_CATEGORY
    assert used.transform(X)[:, -1].sum() == 0  # the indicator of the three is 0 in every row
    assert used.categories[0][:-1] == spec.categories[0][:-1]


def test_a_task_definition_fixes_which_columns_are_categorical() -> None:
    X = pd.DataFrame({"code": [1, 2, 1, 2] * 10, "x": np.arange(40.0)})
    task = TaskDefinition(source="table", target="y", categorical=("code",), features=("code",))
    framed = task_frame(X, task)
    assert list(framed.columns) == ["code"] and framed["code"].iloc[0] == "1"


def test_summary_counts_pass_the_release_path() -> None:
    X = _frame().assign(chol=lambda f: f["age"] * 4.0)
    X.loc[[5, 6], "chol"] = np.nan
    release = Release(b"k" * 32, min_count=5)
    summary = summarise_columns(X, 5, release, np.arange(len(X)))
    assert summary["categorical"]["smoker"]["suppressed"] is None  # 3 rare values: a small count
    assert summary["numeric"]["chol"]["missing"] is None
    counts = [
        summary["rows"],
        summary["numeric"]["chol"]["present"],
        *summary["categorical"]["smoker"]["counts"].values(),
    ]
    assert all(c is None or c >= 5 for c in counts)
    assert abs(summary["rows"] - len(X)) <= release.max_noise


def test_a_rare_level_of_a_coded_column_reads_as_missing_at_the_hub() -> None:
    X = pd.DataFrame({"sex": [0.0] * 60 + [1.0] * 2, "age": np.arange(62.0)})
    spec = agree_preprocessor([summarise_columns(X)])
    used = hub_rows(X, spec, 5)
    assert used["sex"].isna().sum() == 2 and X["sex"].isna().sum() == 0  # the two, not the caller's frame
    column = spec.transform(used)[:, spec.numeric.index("sex")]
    assert np.unique(column).size == 1  # the model cannot tell the two from the others
    assert used["age"].equals(X["age"])  # a continuous column is left alone


def test_released_summaries_agree_nearly_the_exact_preprocessing() -> None:
    rng = np.random.default_rng(5)
    frames = []
    for n in (160, 120):
        chol = rng.normal(230, 40, n).round()
        chol[rng.random(n) < 0.1] = np.nan
        frames.append(pd.DataFrame({"age": rng.normal(55, 9, n).round(), "chol": chol}))
    exact = agree_preprocessor([summarise_columns(X) for X in frames])
    for seed in range(40):
        releases = [Release(bytes([seed, i]) * 16, 5) for i in range(len(frames))]
        summaries = [
            summarise_columns(X, 5, r, np.arange(len(X))) for X, r in zip(frames, releases, strict=True)
        ]
        spec = agree_preprocessor(summaries)
        # Counts move by at most 3 each; the pooled mean and scale must not move by more than a few %.
        assert np.allclose(spec.scale, exact.scale, rtol=0.05)
        assert np.allclose(spec.mean, exact.mean, rtol=0.02)
