"""The hub policy, applied inside the ClientApp: what a message may ask, and the hub's preprocessing.

Every handler calls ``admit`` first: the hub's policy file (node config ``policy=PATH``, else the
default policy shipped with healthmesh) decides whether the operation is answered and which task
definition applies, before any row is read. Training messages also pass ``check_training`` (step
sizes and start parameters) and ``hub_preprocessor``: the coordinator proposes a preprocessing
(pooled from aggregates), the hub accepts it only where it agrees with its own task definition.

``hub_release`` builds the hub's ``Release`` from the key file named in the node config
(``key-file=PATH``, 0600, the release key as hex): the ClientApp never sees the hub's master secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from healthmesh.federation.preprocess import DISCRETE_MAX_VALUES, AgreedPreprocessor
from healthmesh.policy import HubPolicy, PolicyRefusal, TaskDefinition, load_policy
from healthmesh.privacy.release import DEFAULT_MAX_NOISE, Release

__all__ = [
    "WITHHELD_CATEGORY",
    "admit",
    "check_training",
    "hub_min_cell",
    "hub_policy",
    "hub_preprocessor",
    "hub_release",
    "hub_rows",
    "task_frame",
]

log = logging.getLogger(__name__)
# A category the hub will not encode (too few or too many of its rows): it never matches a value.
WITHHELD_CATEGORY = "\x00withheld"
# A coordinator's scale below this share of the hub's own spread would magnify single values.
MIN_SCALE_SHARE = 0.2


def hub_policy(node_config: Mapping[str, Any]) -> HubPolicy:
    """The policy named in the node config (read again for each message, so edits apply at once)."""
    return load_policy(str(node_config.get("policy", "")) or None)


def hub_min_cell(node_config: Mapping[str, Any], policy: HubPolicy) -> int:
    """The stricter of the policy's minimum cell and the node config's ``min-cell``."""
    return max(policy.min_cell, int(node_config.get("min-cell", policy.min_cell)))


def hub_release(node_config: Mapping[str, Any], min_cell: int) -> Release:
    """The hub's release path, keyed by the release key in the node config's key file."""
    path = node_config.get("key-file")
    if not path:
        raise PolicyRefusal("this hub has no release key; start its SuperNode with key-file=PATH")
    try:
        key = bytes.fromhex(Path(str(path)).read_text().strip())
    except (OSError, ValueError):
        raise PolicyRefusal("this hub's release key file cannot be read; check key-file=PATH") from None
    return Release(key, min_count=min_cell, max_noise=min(DEFAULT_MAX_NOISE, min_cell - 1))


def admit(
    node_config: Mapping[str, Any], message_type: str, job: Mapping[str, Any], *, training: bool
) -> tuple[HubPolicy, TaskDefinition | None]:
    """Refuse (PolicyRefusal) what the policy does not allow; the task definition for data jobs."""
    policy = hub_policy(node_config)
    try:
        policy.check_operation(message_type, job)
        task = policy.task_for(job) if training else None
    except PolicyRefusal as refusal:
        log.warning("refused %s: %s", message_type, refusal)
        raise
    return policy, task


def check_training(policy: HubPolicy, config: Mapping[str, Any], start: np.ndarray) -> None:
    """Step sizes and start parameters within the policy's limits (before any row is read)."""
    try:
        policy.check_training_config(
            lr=float(config.get("lr", 1.0)),
            local_steps=int(config.get("local-steps", 1)),
            l2=float(config.get("l2", 0.0)),
            proximal_mu=float(config.get("proximal-mu", 0.0)),
        )
        policy.check_start_parameters([float(v) for v in np.ravel(start)])
    except (TypeError, ValueError):
        raise PolicyRefusal("the training settings are not numbers") from None
    except PolicyRefusal as refusal:
        log.warning("refused training: %s", refusal)
        raise


def task_frame(X: pd.DataFrame, task: TaskDefinition | None) -> pd.DataFrame:
    """The task's columns, typed as the hub defines them (its ``categorical`` columns as text)."""
    if task is None:
        return X
    if task.features is not None:
        X = X[[c for c in task.features if c in X.columns]]
    if task.categorical:
        X = X.copy()
        for column in task.categorical:
            if column in X.columns:
                X[column] = (
                    X[column]
                    .astype(object)
                    .where(X[column].notna(), None)
                    .map(lambda v: v if v is None else str(v))
                )
    return X


def hub_preprocessor(
    spec: AgreedPreprocessor, X: pd.DataFrame, task: TaskDefinition | None, min_cell: int
) -> AgreedPreprocessor:
    """The coordinator's preprocessing as this hub applies it, or PolicyRefusal where it disagrees.

    Refused: a column the hub's task does not have, a numeric column declared categorical (one
    indicator per value), a text column declared numeric, a scale that would magnify single values.
    Not refused but not encoded: a category with fewer than ``min_cell`` rows here, or with fewer
    than ``min_cell`` rows outside it (DataSHIELD's nfilter on each one-hot cell and its
    complement); its indicator is 0 in every row, so its coefficient learns nothing from the rows.
    """
    features = set(task.features) if task is not None and task.features is not None else None
    problems: list[str] = []
    for column in [*spec.numeric, *spec.categorical]:
        if features is not None and column not in features:
            problems.append(f"column {column!r} is not in this hub's task definition")
    for column in spec.categorical:
        if column in X.columns and pd.api.types.is_numeric_dtype(X[column]):
            problems.append(f"numeric column {column!r} is declared categorical")
    for j, column in enumerate(spec.numeric):
        if column not in X.columns:
            continue
        if not pd.api.types.is_numeric_dtype(X[column]):
            problems.append(f"text column {column!r} is declared numeric")
            continue
        spread = float(np.nanstd(X[column].to_numpy(dtype=np.float64))) if X[column].notna().any() else 0.0
        if spread > 0 and not spec.scale[j] >= MIN_SCALE_SHARE * spread:
            problems.append(f"the scale of {column!r} ({spec.scale[j]:.3g}) would magnify single values")
    if problems:
        reason = "the coordinator's preprocessing differs from this hub's task definition: " + "; ".join(
            problems[:3]
        )
        log.warning("refused: %s", reason)
        raise PolicyRefusal(reason)
    n = len(X)
    categories: list[list[str]] = []
    for column, fill, cats in zip(spec.categorical, spec.categorical_fill, spec.categories, strict=True):
        if column in X.columns:
            text = X[column].astype(object).where(X[column].notna(), fill).astype(str)
            counts = text.value_counts()
        else:
            counts = pd.Series(dtype=np.int64)
        categories.append(
            [c if min_cell <= int(counts.get(c, 0)) <= n - min_cell else WITHHELD_CATEGORY for c in cats]
        )
    return replace(spec, categories=categories)


def hub_rows(X: pd.DataFrame, spec: AgreedPreprocessor, min_cell: int) -> pd.DataFrame:
    """The rows as the hub feeds them to a model: a rare level of a coded column reads as missing.

    A coded numeric column (at most ``DISCRETE_MAX_VALUES`` values here, e.g. sex as 0/1) acts
    like a one-hot block: with saturating start parameters, its gradient gives the number of
    positives among the few persons of a rare level. Such a level (fewer than ``min_cell`` rows) is
    imputed like a missing value, so every level the model sees holds at least ``min_cell`` rows.
    """
    out = X
    for column in spec.numeric:
        if column not in X.columns or not pd.api.types.is_numeric_dtype(X[column]):
            continue
        counts = X[column].value_counts(dropna=True)
        if len(counts) > DISCRETE_MAX_VALUES:
            continue
        rare = counts.index[counts < min_cell]
        if len(rare):
            out = out.copy() if out is X else out
            out.loc[out[column].isin(rare), column] = np.nan
    return out
