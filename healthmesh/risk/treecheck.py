"""A LightGBM text model checked before LightGBM parses it, then tried once in a fenced subprocess.

LightGBM's model parser trusts its input: a wrong ``tree_sizes``, a child index out of range or a
cycle among the nodes aborts the process or makes prediction loop forever, and a hub loads its
models at start-up. So ``check_tree_model`` reads the text first, in Python, and refuses anything
that is not a plain tree ensemble of bounded size (header, tree count, each tree's fields, their
lengths and numbers, the tree shape itself); ``trial_load`` then parses the text and scores one row
in a subprocess with a time and memory limit, so whatever the check missed costs that process, not
the hub. Both refuse with one ``ModelError`` line.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import threading

from healthmesh.errors import ModelError

__all__ = ["MAX_LEAVES", "MAX_MODEL_BYTES", "MAX_TREES", "check_tree_model", "trial_load"]

MAX_MODEL_BYTES = 64 * 1024 * 1024
MAX_TREES = 20_000
MAX_LEAVES = 131_072
MAX_FEATURES = 100_000
TRIAL_TIMEOUT_S = 30.0
TRIAL_MEMORY_BYTES = 4 * 1024**3

_HEADER_KEYS = (
    "version",
    "num_class",
    "num_tree_per_iteration",
    "label_index",
    "max_feature_idx",
    "objective",
)
_OBJECTIVES = ("binary", "regression", "cross_entropy")
_INTERNAL = ("split_feature", "split_gain", "threshold", "decision_type", "left_child", "right_child")
_INTERNAL_STATS = ("internal_value", "internal_weight", "internal_count")
_TREE_KEYS = frozenset(
    ("num_leaves", "num_cat", "leaf_value", "leaf_weight", "leaf_count", "is_linear", "shrinkage")
    + _INTERNAL
    + _INTERNAL_STATS
)


def _refuse(where: str, reason: str) -> ModelError:
    return ModelError(
        f"{where}: {reason}; refusing the model (re-train it or re-copy it from its source hub)"
    )


def _int(text: str, where: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _refuse(where, f"{text[:40]!r} is not an integer") from None
    if not low <= value <= high:
        raise _refuse(where, f"{value} is outside {low}..{high}")
    return value


def _numbers(text: str, where: str, *, allow_inf: bool = False) -> list[float]:
    values = []
    for word in text.split():
        try:
            value = float(word)
        except ValueError:
            raise _refuse(where, f"{word[:40]!r} is not a number") from None
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            raise _refuse(where, f"{word!r} is not a finite number")
        values.append(value)
    return values


def _integers(text: str, where: str, low: int, high: int) -> list[int]:
    return [_int(word, where, low, high) for word in text.split()]


def _fields(block: str, where: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in block.splitlines():
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or key in fields:
            raise _refuse(where, f"line {line[:40]!r} is not a single key=value")
        fields[key] = value
    return fields


def _check_shape(left: list[int], right: list[int], leaves: int, where: str) -> None:
    """Every node reached exactly once from the root: a tree, so prediction always ends at a leaf."""
    if leaves == 1:
        return
    seen_nodes, seen_leaves = [False] * (leaves - 1), [False] * leaves
    stack = [0]
    seen_nodes[0] = True
    while stack:
        node = stack.pop()
        for child in (left[node], right[node]):
            if child >= 0:
                if child >= leaves - 1 or seen_nodes[child]:
                    raise _refuse(where, f"node {node} points to node {child}: not a tree")
                seen_nodes[child] = True
                stack.append(child)
            else:
                leaf = ~child
                if leaf >= leaves or seen_leaves[leaf]:
                    raise _refuse(where, f"node {node} points to leaf {leaf}: not a tree")
                seen_leaves[leaf] = True
    if not all(seen_nodes) or not all(seen_leaves):
        raise _refuse(where, "some nodes or leaves are not reachable from the root")


def _check_tree(block: str, index: int, max_feature: int) -> None:
    where = f"tree {index} of model.lgb.txt"
    fields = _fields(block, where)
    title = block.split("\n", 1)[0]
    if title != f"Tree={index}":
        raise _refuse(where, f"starts with {title[:40]!r}, not 'Tree={index}'")
    fields.pop("Tree", None)
    unknown = sorted(set(fields) - _TREE_KEYS)
    if unknown:
        raise _refuse(where, f"unexpected field(s) {', '.join(k[:30] for k in unknown[:3])}")
    leaves = _int(fields.get("num_leaves", ""), f"{where} num_leaves", 1, MAX_LEAVES)
    _int(fields.get("num_cat", ""), f"{where} num_cat (categorical splits are not accepted)", 0, 0)
    _int(fields.get("is_linear", "0"), f"{where} is_linear (linear trees are not accepted)", 0, 0)
    _numbers(fields.get("shrinkage", "1"), f"{where} shrinkage")
    if len(_numbers(fields.get("leaf_value", ""), f"{where} leaf_value")) != leaves:
        raise _refuse(where, f"leaf_value does not have num_leaves={leaves} values")
    for key in ("leaf_weight", "leaf_count"):
        if len(_numbers(fields.get(key, ""), f"{where} {key}")) not in (0, leaves):
            raise _refuse(where, f"{key} does not have num_leaves={leaves} values")
    if leaves == 1:
        return
    internal = leaves - 1
    for key in _INTERNAL + _INTERNAL_STATS:
        if key not in fields:
            raise _refuse(where, f"no {key}")
    split_feature = _integers(fields["split_feature"], f"{where} split_feature", 0, max_feature)
    left = _integers(fields["left_child"], f"{where} left_child", -leaves, internal - 1)
    right = _integers(fields["right_child"], f"{where} right_child", -leaves, internal - 1)
    decision = _integers(fields["decision_type"], f"{where} decision_type", 0, 15)
    if any(d & 1 for d in decision):
        raise _refuse(where, "a categorical split (categorical splits are not accepted)")
    lengths = {
        "split_feature": len(split_feature),
        "left_child": len(left),
        "right_child": len(right),
        "decision_type": len(decision),
        "split_gain": len(_numbers(fields["split_gain"], f"{where} split_gain", allow_inf=True)),
        "threshold": len(_numbers(fields["threshold"], f"{where} threshold", allow_inf=True)),
    }
    for key in _INTERNAL_STATS:
        lengths[key] = len(_numbers(fields[key], f"{where} {key}", allow_inf=True))
    wrong = [key for key, n in lengths.items() if n != internal]
    if wrong:
        raise _refuse(where, f"{wrong[0]} does not have num_leaves-1={internal} values")
    _check_shape(left, right, leaves, where)


def check_tree_model(text: str, n_features: int | None = None) -> int:
    """The number of trees of a LightGBM text model, after checking all of it; ModelError otherwise.

    ``n_features`` is the model's design width (from ``model.json``), when known.
    """
    where = "model.lgb.txt"
    if len(text) > MAX_MODEL_BYTES:
        raise _refuse(where, f"{len(text):,} bytes is over the {MAX_MODEL_BYTES:,}-byte limit")
    if not text.isascii():
        raise _refuse(where, "has bytes outside ASCII (LightGBM writes plain ASCII)")
    if not text.startswith("tree\n"):
        raise _refuse(where, "does not start with LightGBM's 'tree' header")
    head_end = text.find("\n\nTree=0\n")
    trees_end = text.find("end of trees")
    if head_end < 0 or trees_end < head_end:
        raise _refuse(where, "no 'Tree=0' ... 'end of trees' section")
    header = _fields(text[len("tree\n") : head_end], f"{where} header")
    for key in _HEADER_KEYS + ("feature_names", "tree_sizes"):
        if key not in header:
            raise _refuse(where, f"the header has no {key}")
    for key in ("num_class", "num_tree_per_iteration"):
        _int(header[key], f"{where} {key} (one class only)", 1, 1)
    _int(header["label_index"], f"{where} label_index", 0, 0)
    max_feature = _int(header["max_feature_idx"], f"{where} max_feature_idx", 0, MAX_FEATURES - 1)
    names = header["feature_names"].split()
    if len(names) != max_feature + 1:
        raise _refuse(where, f"{len(names)} feature names for max_feature_idx={max_feature}")
    if n_features is not None and max_feature + 1 != n_features:
        raise _refuse(where, f"{max_feature + 1} features, but model.json describes {n_features}")
    if header["objective"].split(" ", 1)[0] not in _OBJECTIVES:
        raise _refuse(where, f"objective {header['objective'][:40]!r} is not one of {', '.join(_OBJECTIVES)}")
    sizes = _integers(header["tree_sizes"], f"{where} tree_sizes", 1, MAX_MODEL_BYTES)
    if not 1 <= len(sizes) <= MAX_TREES:
        raise _refuse(where, f"{len(sizes)} trees (1 to {MAX_TREES:,} accepted)")
    # tree_sizes are byte offsets LightGBM jumps by: they must cut the section exactly at each tree.
    position, end = head_end + 2, trees_end  # ASCII: characters are bytes
    for index, size in enumerate(sizes):
        if position + size > end:
            raise _refuse(where, f"tree_sizes runs past the trees at tree {index}")
        _check_tree(text[position : position + size].rstrip("\n"), index, max_feature)
        position += size
    if position != end:
        raise _refuse(where, "tree_sizes does not cover the trees exactly")
    return len(sizes)


# -- the trial in a subprocess -------------------------------------------------------------------

# The limits are set first, before LightGBM is even imported (no preexec_fn: the parent may run threads).
_TRIAL = """
import resource, sys
memory, cpu = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
import numpy as np
import lightgbm as lgb
text = sys.stdin.read()
booster = lgb.Booster(model_str=text)
booster.predict(np.zeros((1, booster.num_feature())), raw_score=True)
print("ok", booster.num_trees())
"""
_tried: set[str] = set()
_tried_lock = threading.Lock()


def trial_load(text: str, timeout_s: float = TRIAL_TIMEOUT_S) -> None:
    """Parse ``text`` with LightGBM and score one row in a fenced subprocess; ModelError if that fails.

    A text that passed once in this process is not tried again.
    """
    digest = hashlib.sha256(text.encode()).hexdigest()
    with _tried_lock:
        if digest in _tried:
            return
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "LANG", "HOME", "TMPDIR")}
    env["OMP_NUM_THREADS"] = "1"
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _TRIAL, str(TRIAL_MEMORY_BYTES), str(int(timeout_s) + 1)],
            input=text.encode(),
            capture_output=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise _refuse(
            "model.lgb.txt", f"LightGBM did not parse and score it within {timeout_s:.0f} s"
        ) from None
    if done.returncode != 0 or not done.stdout.startswith(b"ok"):
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1][:200] if lines else f"the parser exited with code {done.returncode}"
        raise _refuse("model.lgb.txt", f"LightGBM could not parse and score it ({reason})")
    with _tried_lock:
        _tried.add(digest)
