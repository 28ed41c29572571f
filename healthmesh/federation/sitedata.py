"""A hub's own rows for one federated job, split into training and held-out parts.

The same function reads a site's table inside its ClientApp and in the coordinator's baselines
(``train-table`` is run by someone who holds all the files, to compare), so every site has one
held-out split: stratified by the label, seeded. CDM sources come from ``healthmesh.risk`` when a
job names a risk task.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from healthmesh.errors import FederationError

__all__ = ["SiteData", "load_site_data", "load_site_rows", "split_rows"]

DEFAULT_TEST_FRACTION = 0.25
DEFAULT_SEED = 42


@dataclass
class SiteData:
    """Training and held-out rows of one site (they never leave the hub's process)."""

    X_train: pd.DataFrame
    y_train: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    # Positions of the rows in the site's full row list: the record ids of the release path's cell keys.
    train_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    test_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def row_counts(self) -> tuple[int, int, int]:
        return (len(self.y_train) + len(self.y_test), len(self.y_train), len(self.y_test))


def split_rows(
    X: pd.DataFrame, y: np.ndarray, *, test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = DEFAULT_SEED
) -> SiteData:
    """Stratified, seeded split; falls back to an unstratified split when a class is too rare."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise FederationError(f"test fraction must be between 0 and 1; got {test_fraction}")
    y = np.asarray(y).astype(np.int8)
    stratify = y if np.bincount(y, minlength=2).min() >= 2 else None
    index = np.arange(len(y))
    train_idx, test_idx = train_test_split(
        index, test_size=test_fraction, random_state=seed, stratify=stratify
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return SiteData(
        X_train=X.iloc[train_idx].reset_index(drop=True),
        y_train=y[train_idx],
        X_test=X.iloc[test_idx].reset_index(drop=True),
        y_test=y[test_idx],
        train_ids=train_idx.astype(np.int64),
        test_ids=test_idx.astype(np.int64),
    )


def _table_data(path: str, job: Mapping[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    from healthmesh.risk.tables import read_table

    positive = job.get("positive") or None
    table = read_table(Path(path), str(job["target"]), positive=str(positive) if positive else None)
    return table.X, table.y


def _cdm_data(db: str, job: Mapping[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    from healthmesh.federation.cdm_features import cdm_training_frame

    return cdm_training_frame(Path(db), job)


def load_site_rows(node_config: Mapping[str, Any], job: Mapping[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """All of this node's rows for ``job`` (``source`` = ``table`` or ``cdm``): features and 0/1 labels."""
    source = str(job.get("source", "table"))
    if source == "table":
        path = node_config.get("table")
        if not path:
            raise FederationError(
                "this SuperNode has no 'table' in its node config; start it with table=FILE"
            )
        return _table_data(str(path), job)
    if source == "cdm":
        db = node_config.get("db")
        if not db:
            raise FederationError("this SuperNode has no 'db' in its node config; start it with db=PATH")
        return _cdm_data(str(db), job)
    raise FederationError(f"unknown data source {source!r}; use 'table' or 'cdm'")


DATA_KEYS = ("source", "target", "positive", "seed", "test-fraction", "risk-task", "horizon-years")


def _cache_file(node_config: Mapping[str, Any], job: Mapping[str, Any]) -> Path | None:
    """Where this hub keeps the rows of ``job`` between messages (inside the hub, never sent)."""
    cache_dir = node_config.get("cache-dir")
    source = node_config.get("table") if job.get("source", "table") == "table" else node_config.get("db")
    if not cache_dir or not source or not Path(str(source)).is_file():
        return None
    stat = Path(str(source)).stat()
    key = json.dumps(
        {
            "job": {k: job.get(k) for k in DATA_KEYS},
            "source": str(source),
            "mtime": stat.st_mtime_ns,
            "size": stat.st_size,
        },
        sort_keys=True,
    )
    return Path(str(cache_dir)) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.parquet"


_PART, _LABEL = "__healthmesh_part", "__healthmesh_label"


def _write_cache(path: Path, X: pd.DataFrame, y: np.ndarray, data: SiteData) -> None:
    """All rows with their label and split part, as Parquet (plain data: no code runs on reading it)."""
    frame = X.copy()
    frame[_LABEL] = np.asarray(y).astype(np.int8)
    part = np.zeros(len(frame), dtype=np.int8)
    part[data.test_ids] = 1
    frame[_PART] = part
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    # Created private: the rows never leave the hub, not even to another local user.
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        frame.to_parquet(handle, index=False)
    partial.replace(path)  # atomic: a parallel reader sees all of it or nothing


def _read_cache(path: Path) -> SiteData:
    frame = pd.read_parquet(path)
    part = frame.pop(_PART).to_numpy()
    y = frame.pop(_LABEL).to_numpy().astype(np.int8)
    train_idx, test_idx = np.flatnonzero(part == 0), np.flatnonzero(part == 1)
    return SiteData(
        X_train=frame.iloc[train_idx].reset_index(drop=True),
        y_train=y[train_idx],
        X_test=frame.iloc[test_idx].reset_index(drop=True),
        y_test=y[test_idx],
        train_ids=train_idx.astype(np.int64),
        test_ids=test_idx.astype(np.int64),
    )


def load_site_data(node_config: Mapping[str, Any], job: Mapping[str, Any]) -> SiteData:
    """This node's rows for ``job``, split into training and held-out parts.

    With node config ``cache-dir`` the rows read by the first message of a job are kept there (at
    the hub, as Parquet) so later rounds skip reading and feature SQL.
    """
    cache = _cache_file(node_config, job)
    if cache is not None and cache.is_file():
        return _read_cache(cache)
    X, y = load_site_rows(node_config, job)
    data = split_rows(
        X,
        y,
        test_fraction=float(job.get("test-fraction", DEFAULT_TEST_FRACTION)),
        seed=int(job.get("seed", DEFAULT_SEED)),
    )
    if cache is not None:
        _write_cache(cache, X, y, data)
    return data
