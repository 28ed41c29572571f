"""Reading flat tables: formats, missing-value spellings, categorical text, target binarisation."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from healthmesh.errors import ModelError
from healthmesh.risk import make_preprocessor, read_table

CSV = "age,smoker,chol,outcome\n50,yes,200,1\n61,no,?,0\n,no,NA,0\n45,,180,2\n70,yes,240,0\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.tsv", "t.tsv.gz"])
def test_missing_spellings_and_text_columns(tmp_path: Path, name: str) -> None:
    text = CSV.replace(",", "\t") if ".tsv" in name else CSV
    data = read_table(_write(tmp_path, name, text), "outcome")
    assert list(data.X.columns) == ["age", "smoker", "chol"]
    assert data.X["age"].isna().sum() == 1
    assert data.X["chol"].isna().sum() == 2
    assert data.X["smoker"].isna().sum() == 1
    assert data.categorical_columns == ["smoker"]
    # Three values (0, 1, 2): 0 versus the rest, and the rule says so.
    np.testing.assert_array_equal(data.y, [1, 0, 0, 1, 0])
    assert "0 (negative) versus the rest" in data.target_rule


def test_parquet_and_positive_option(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "label": ["ckd", "notckd", "ckd", "ckd"]})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    minority = read_table(path, "label")
    assert minority.positive_label == "notckd"
    np.testing.assert_array_equal(minority.y, [0, 1, 0, 0])
    chosen = read_table(path, "label", positive="ckd")
    np.testing.assert_array_equal(chosen.y, [1, 0, 1, 1])
    assert "--positive" in chosen.target_rule


def test_lenient_arff(tmp_path: Path) -> None:
    text = (
        "@relation r\n@attribute 'age' numeric\n@attribute 'htn' {yes,no}\n@attribute 'class' {ckd,notckd}\n"
        "@data\n48,yes,ckd\n7,\t?,ckd\n62,no,,notckd\n50 , no,notckd\n\n"
    )
    data = read_table(_write(tmp_path, "k.arff", text), "class", positive="ckd")
    assert data.X.shape == (4, 2)
    assert data.X["htn"].isna().sum() == 1
    np.testing.assert_array_equal(data.y, [1, 1, 0, 0])


def test_identifier_column_left_out(tmp_path: Path) -> None:
    text = "id,age,y\n11,50,1\n12,60,0\n13,70,0\n"
    data = read_table(_write(tmp_path, "ids.csv", text), "y")
    assert data.dropped_columns == ["id"]
    assert list(data.X.columns) == ["age"]


@pytest.mark.parametrize(
    ("text", "target", "positive", "message"),
    [
        ("a,y\n1,1\n2,1\n", "y", None, "single value"),
        ("a,y\n1,1\n2,0\n", "z", None, "not in"),
        ("a,y\n1,a\n2,b\n3,c\n", "y", None, "--positive"),
        ("a,y\n1,1\n2,0\n", "y", "7", "not a value"),
    ],
)
def test_bad_targets_are_explained(
    tmp_path: Path, text: str, target: str, positive: str | None, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        read_table(_write(tmp_path, "bad.csv", text), target, positive)


def test_preprocessor_imputes_scales_and_one_hot_encodes(tmp_path: Path) -> None:
    data = read_table(_write(tmp_path, "t.csv", CSV), "outcome")
    design = make_preprocessor(data.X).fit_transform(data.X)
    assert design.shape == (5, 2 + 2)  # age, chol, smoker=no, smoker=yes
    assert not np.isnan(design).any()
    np.testing.assert_allclose(design[:, :2].mean(axis=0), 0.0, atol=1e-12)
