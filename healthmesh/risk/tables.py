"""Flat tables a company brings: CSV/TSV (plain or gzip), Parquet and ARFF, read into features and 0/1 labels.

Missing values may be written as empty, ``?``, ``NA`` (and the other usual spellings); text columns stay
categorical, columns whose every present value is a number become numeric. The target is binarised by one
rule that the model card repeats (``TableData.target_rule``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from healthmesh.errors import ModelError

__all__ = ["MISSING_TOKENS", "TableData", "coerce_columns", "make_preprocessor", "read_frame", "read_table"]

MISSING_TOKENS = ["", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A", "-"]


@dataclass
class TableData:
    """Features and 0/1 labels read from a flat table."""

    X: pd.DataFrame
    y: np.ndarray
    positive_label: str
    target_rule: str
    target: str = ""
    source: str = ""
    fingerprint: str = ""
    numeric_columns: list[str] = field(default_factory=list)
    categorical_columns: list[str] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)
    rows_without_target: int = 0


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8-sig", errors="replace")


def _suffixes(path: Path) -> list[str]:
    return [s.lower() for s in path.suffixes if s.lower() != ".gz"]


def _read_arff(text: str) -> pd.DataFrame:
    """A lenient ARFF reader: stray spaces, tabs, quotes and extra commas are tolerated."""
    names: list[str] = []
    rows: list[list[str]] = []
    in_data = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("%"):
            continue
        lower = stripped.lower()
        if not in_data:
            if lower.startswith("@attribute"):
                rest = stripped[len("@attribute") :].strip()
                if rest[:1] in "'\"":
                    quote = rest[0]
                    end = rest.find(quote, 1)
                    names.append(rest[1:end])
                else:
                    names.append(rest.split()[0])
            elif lower.startswith("@data"):
                in_data = True
            continue
        if stripped.startswith("{"):
            raise ModelError("sparse ARFF rows are not supported; write the table densely or as CSV")
        values = [v.strip().strip("'\"").strip() for v in stripped.split(",")]
        while len(values) > len(names) and values[-1] == "":
            values.pop()
        if len(values) > len(names):
            # A stray extra comma inside the row: drop its empty field when that restores the width.
            present = [v for v in values if v != ""]
            if len(present) == len(names):
                values = present
        if len(values) != len(names):
            raise ModelError(
                f"ARFF row has {len(values)} values but the header declares {len(names)} attributes: {line[:80]!r}"
            )
        rows.append(values)
    if not names:
        raise ModelError("no @attribute lines found; is this an ARFF file?")
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    return frame.replace({token: np.nan for token in MISSING_TOKENS})


def read_frame(path: Path) -> pd.DataFrame:
    """Read a CSV/TSV (plain or gzip), Parquet or ARFF file into a raw frame; missing tokens become NaN."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"data file {str(path)!r} not found; give the path of a CSV, TSV, Parquet or ARFF file"
        )
    suffixes = _suffixes(path)
    kind = suffixes[-1] if suffixes else ""
    try:
        if kind in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            return frame.replace({token: np.nan for token in MISSING_TOKENS if token})
        text = _open_text(path)
        if kind == ".arff" or text.lstrip().lower().startswith(("@relation", "%")):
            return _read_arff(text)
        first = text.split("\n", 1)[0]
        sep = "\t" if kind in (".tsv", ".tab") or first.count("\t") > first.count(",") else ","
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            na_values=MISSING_TOKENS,
            keep_default_na=True,
            skipinitialspace=True,
            dtype=str,
        )
    except ModelError:
        raise
    except Exception as error:  # pandas / pyarrow raise many kinds; one clear message instead
        raise ModelError(f"cannot read {str(path)!r} as a table: {error}") from error
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def coerce_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Make numeric every column whose present values all parse as numbers; keep the rest as text."""
    out = pd.DataFrame(index=frame.index)
    numeric: list[str] = []
    categorical: list[str] = []
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series):
            series = series.astype(float)
        if pd.api.types.is_numeric_dtype(series):
            out[column] = series.astype(float)
            numeric.append(column)
            continue
        text = series.astype("string").str.strip()
        text = text.mask(text.isin(MISSING_TOKENS))
        parsed = pd.to_numeric(text, errors="coerce")
        if parsed.notna().sum() == text.notna().sum():
            out[column] = parsed.astype(float)
            numeric.append(column)
        else:
            out[column] = text.astype(object).where(text.notna(), np.nan)
            categorical.append(column)
    return out, numeric, categorical


def _looks_like_identifier(name: str, values: pd.Series) -> bool:
    """A column that names rows rather than describing them (``id``, ``patient_id`` with distinct values)."""
    lowered = name.strip().lower()
    named_id = lowered in {"id", "identifier", "row", "index"} or lowered.endswith(("_id", " id"))
    present = values.dropna()
    return named_id and len(present) > 0 and present.nunique() == len(present)


def _format_label(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _binarise(target: pd.Series, positive: str | None, column: str) -> tuple[np.ndarray, str, str]:
    numeric = pd.to_numeric(target, errors="coerce")
    is_numeric = bool(numeric.notna().all())
    values = numeric if is_numeric else target.astype(str).str.strip()
    distinct = sorted(values.unique().tolist(), key=lambda v: (str(type(v)), v))
    if len(distinct) < 2:
        raise ModelError(
            f"target column {column!r} has a single value ({_format_label(distinct[0]) if distinct else 'none'}); "
            "a risk model needs both outcomes present"
        )
    if positive is not None:
        chosen: object = positive.strip()
        if is_numeric:
            try:
                chosen = float(positive)
            except ValueError:
                raise ModelError(
                    f"--positive {positive!r} is not a value of the numeric target {column!r}; "
                    f"values are {', '.join(_format_label(v) for v in distinct[:10])}"
                ) from None
        if chosen not in distinct:
            raise ModelError(
                f"--positive {positive!r} is not a value of target {column!r}; "
                f"values are {', '.join(_format_label(v) for v in distinct[:10])}"
            )
        y = (values == chosen).to_numpy(dtype=np.int8)
        label = _format_label(chosen)
        return y, label, f"{column} == {label} is positive (named with --positive); all other values negative"
    if len(distinct) == 2:
        if is_numeric and set(distinct) == {0.0, 1.0}:
            chosen = 1.0
            rule = f"{column}: values 0 and 1, 1 is positive"
        else:
            counts = values.value_counts()
            # Minority value is positive; on a tie the later value in sorted order.
            chosen = min(distinct, key=lambda v: (counts[v], -distinct.index(v)))
            rule = f"{column}: two values, the minority value {_format_label(chosen)!r} is positive"
        y = (values == chosen).to_numpy(dtype=np.int8)
        return y, _format_label(chosen), rule
    if is_numeric and 0.0 in distinct:
        y = (values != 0.0).to_numpy(dtype=np.int8)
        shown = ", ".join(_format_label(v) for v in distinct[:10])
        return (
            y,
            "not 0",
            f"{column}: {len(distinct)} values ({shown}); binarised as 0 (negative) versus the rest",
        )
    raise ModelError(
        f"target column {column!r} has {len(distinct)} values and none is 0; "
        "name the positive class with --positive VALUE"
    )


def read_table(path: Path, target: str, positive: str | None = None) -> TableData:
    """Read a flat table into features ``X`` (numeric and categorical, NaN for missing) and labels ``y``."""
    path = Path(path)
    frame = read_frame(path)
    if target not in frame.columns:
        stripped = {c.strip().lower(): c for c in frame.columns}
        if target.strip().lower() in stripped:
            target = stripped[target.strip().lower()]
        else:
            raise ModelError(
                f"target column {target!r} not in {str(path)!r}; columns are {', '.join(map(str, frame.columns))}"
            )
    raw_target = frame[target]
    has_target = raw_target.notna() & ~raw_target.astype(str).str.strip().isin(MISSING_TOKENS)
    rows_without_target = int((~has_target).sum())
    frame = frame.loc[has_target].reset_index(drop=True)
    if frame.empty:
        raise ModelError(f"target column {target!r} is empty in every row of {str(path)!r}")
    y, label, rule = _binarise(frame[target], positive, target)
    features = frame.drop(columns=[target])
    dropped = [c for c in features.columns if _looks_like_identifier(str(c), features[c])]
    dropped += [c for c in features.columns if c not in dropped and features[c].isna().all()]
    features = features.drop(columns=dropped)
    if features.shape[1] == 0:
        raise ModelError(f"{str(path)!r} has no feature columns besides the target {target!r}")
    X, numeric, categorical = coerce_columns(features)
    if rows_without_target:
        rule += f"; {rows_without_target} rows without a target value left out"
    return TableData(
        X=X,
        y=y,
        positive_label=label,
        target_rule=rule,
        target=target,
        source=path.name,
        fingerprint=_file_sha256(path),
        numeric_columns=numeric,
        categorical_columns=categorical,
        dropped_columns=[str(c) for c in dropped],
        rows_without_target=rows_without_target,
    )


def make_preprocessor(X: pd.DataFrame) -> ColumnTransformer:
    """Impute (median) and scale numeric columns; impute (most frequent) and one-hot categorical columns."""
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    transformers: list[tuple[str, Pipeline, list[str]]] = []
    if numeric:
        transformers.append(
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                categorical,
            )
        )
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
