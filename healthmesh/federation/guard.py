"""The hub's last check on every reply its ClientApp sends: aggregates and parameters only.

``hub_guard`` is a Flower mod on the ClientApp, so it sits on the one path by which anything
leaves a hub. It refuses (the reply becomes an error that carries no data) when a reply looks
row-shaped:

- an array (or a list in a config/metric record) with a dimension equal to a local row count
  that the handler registered with ``register_local_rows``;
- an array that is not numeric (text, objects);
- a key that names personal data (person_id, name, birth date, address, ...);
- a string (also inside JSON strings) that looks like an identifier: long digit runs, UUIDs,
  long hex hashes, e-mail addresses, dates;
- a count in a ``counts`` record between 1 and the minimum cell size (small cells must be
  suppressed by the disclosure step before this point; suppressed cells are sent as -1).

Exceptions of the handlers are replaced by a one-line reason without their text (an error message
can quote a row). With node config ``audit-dir=PATH`` every outgoing reply is also written, in full,
to ``PATH/<site>.jsonl`` so that a test or an auditor can inspect exactly what left the hub.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from healthmesh.errors import FederationError

__all__ = [
    "GUARD_STATE_KEY",
    "SUPPRESSED",
    "find_row_shaped",
    "hub_guard",
    "record_dict_to_json",
    "register_local_rows",
]

GUARD_STATE_KEY = "healthmesh-guard"
SUPPRESSED = -1  # how a suppressed small cell travels in a ``counts`` record
DEFAULT_MIN_CELL = 5

_PERSONAL_KEYS = re.compile(
    r"(person_?id|patient|subject_?id|mrn|ssn|rrn|\bname\b|first_?name|last_?name|birth|dob|"
    r"address|street|phone|email|e-mail|zip_?code|postcode)",
    re.IGNORECASE,
)
_IDENTIFIER_VALUES = [
    ("a long run of digits", re.compile(r"\d{7,}")),
    ("a UUID", re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)),
    ("a long hex string", re.compile(r"\b[0-9a-f]{16,}\b", re.I)),
    ("an e-mail address", re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")),
    ("a date", re.compile(r"\b(19|20)\d\d-[01]\d-[0-3]\d\b")),
    ("a Korean resident registration number", re.compile(r"\b\d{6}-\d{7}\b")),
]
log = logging.getLogger(__name__)


def register_local_rows(context: Context, *row_counts: int) -> None:
    """Tell the guard how many rows the handler read, so that no reply may have that shape."""
    previous: list[int] = []
    if GUARD_STATE_KEY in context.state.config_records:
        previous = [int(v) for v in context.state.config_records[GUARD_STATE_KEY].get("rows", [])]  # type: ignore[union-attr]
    rows = sorted({*previous, *(int(n) for n in row_counts)})
    context.state[GUARD_STATE_KEY] = ConfigRecord({"rows": rows})


def _local_rows(context: Context) -> set[int]:
    if GUARD_STATE_KEY not in context.state.config_records:
        return set()
    rows = context.state.config_records[GUARD_STATE_KEY].get("rows", [])
    # Tiny counts (0-2) are not a shape worth guarding and would refuse every scalar.
    return {int(n) for n in rows if int(n) > 2}  # type: ignore[union-attr]


def _check_string(where: str, text: str, problems: list[str], rows: set[int]) -> None:
    stripped = text.strip()
    if stripped[:1] in "[{":
        try:
            parsed = json.loads(stripped)
        except ValueError:
            parsed = None
        if parsed is not None:
            _check_json(where, parsed, problems, rows)
            return
    for label, pattern in _IDENTIFIER_VALUES:
        if pattern.search(text):
            problems.append(f"{where} holds {label}")
            return


def _check_json(where: str, value: Any, problems: list[str], rows: set[int]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if _PERSONAL_KEYS.search(str(key)):
                problems.append(f"{where} has a key that names personal data ({key!r})")
            _check_json(f"{where}.{key}", item, problems, rows)
    elif isinstance(value, list):
        if len(value) in rows:
            problems.append(f"{where} is a list of {len(value)} items, the number of local rows")
        for index, item in enumerate(value[:10_000]):
            _check_json(f"{where}[{index}]", item, problems, rows)
    elif isinstance(value, str):
        _check_string(where, value, problems, rows)


def _check_array(where: str, array: np.ndarray, rows: set[int], problems: list[str]) -> None:
    if array.dtype.kind not in "biuf":
        problems.append(f"{where} is a {array.dtype} array; only numeric parameters may leave a hub")
    for axis, size in enumerate(array.shape):
        if size in rows:
            problems.append(f"{where} has {size} entries on axis {axis}, the number of local rows")
            break


def find_row_shaped(
    content: RecordDict, local_rows: Iterable[int] = (), min_cell: int = DEFAULT_MIN_CELL
) -> list[str]:
    """Every reason why ``content`` may not leave a hub (an empty list when it may)."""
    rows = {int(n) for n in local_rows if int(n) > 2}
    problems: list[str] = []
    for name, record in content.items():
        if _PERSONAL_KEYS.search(name):
            problems.append(f"record {name!r} is named after personal data")
        if isinstance(record, ArrayRecord):
            for key, array in record.items():
                if _PERSONAL_KEYS.search(key):
                    problems.append(f"array {name}.{key} is named after personal data")
                _check_array(f"array {name}.{key}", array.numpy(), rows, problems)
        elif isinstance(record, ConfigRecord | MetricRecord):
            for key, value in record.items():
                if _PERSONAL_KEYS.search(key):
                    problems.append(f"{name}.{key} is named after personal data")
                plain = value.decode(errors="replace") if isinstance(value, bytes) else value
                _check_json(f"{name}.{key}", plain, problems, rows)
            if name == "counts" and isinstance(record, MetricRecord):
                for key, count in record.items():
                    values = count if isinstance(count, list) else [count]
                    for number in values:
                        if 0 < float(number) < min_cell:
                            problems.append(f"counts.{key} is a small cell (below {min_cell}); suppress it")
    return problems


def record_dict_to_json(content: RecordDict) -> dict[str, Any]:
    """A full, JSON-able copy of a message's records (arrays as nested lists)."""
    out: dict[str, Any] = {}
    for name, record in content.items():
        if isinstance(record, ArrayRecord):
            out[name] = {
                "type": "arrays",
                "items": {
                    k: {"shape": list(a.shape), "dtype": str(a.numpy().dtype), "values": a.numpy().tolist()}
                    for k, a in record.items()
                },
            }
        else:
            kind = "metrics" if isinstance(record, MetricRecord) else "config"
            items = {
                k: (v.decode(errors="replace") if isinstance(v, bytes) else v) for k, v in record.items()
            }
            out[name] = {"type": kind, "items": items}
    return out


def _audit(context: Context, message: Message, reply: Message) -> None:
    audit_dir = context.node_config.get("audit-dir")
    if not audit_dir:
        return
    site = str(context.node_config.get("site", context.node_id))
    entry = {
        "site": site,
        "time": time.time(),
        "message_type": message.metadata.message_type,
        "local_rows": sorted(_local_rows(context)),
        "error": reply.error.reason if reply.has_error() else None,
        "content": None if reply.has_error() else record_dict_to_json(reply.content),
    }
    path = Path(str(audit_dir)) / f"{site}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


def hub_guard(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: run the handler, then refuse any reply that is row-shaped."""
    site = str(context.node_config.get("site", "this hub"))
    min_cell = int(context.node_config.get("min-cell", DEFAULT_MIN_CELL))  # type: ignore[arg-type]
    try:
        reply = call_next(message, context)
    except Exception as error:
        # The handler's own text may quote data; only its kind leaves the hub.
        if isinstance(error, FederationError):  # a refusal: its reason is the whole story
            log.warning("hub %s refused %s: %s", site, message.metadata.message_type, error)
        else:
            log.exception("ClientApp handler failed")
        detail = str(error) if isinstance(error, FederationError) else type(error).__name__
        reply_error = FederationError(
            f"hub {site} could not answer {message.metadata.message_type}: {detail}"
        )
        _audit_error(context, message, str(reply_error))
        raise reply_error from None
    if not reply.has_error():
        problems = find_row_shaped(reply.content, _local_rows(context), min_cell)
        if problems:
            reason = f"hub {site} refused to send a row-shaped reply: " + "; ".join(problems[:5])
            _audit_error(context, message, reason)
            raise FederationError(reason)
    _audit(context, message, reply)
    return reply


def _audit_error(context: Context, message: Message, reason: str) -> None:
    audit_dir = context.node_config.get("audit-dir")
    if not audit_dir:
        return
    site = str(context.node_config.get("site", context.node_id))
    path = Path(str(audit_dir)) / f"{site}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "site": site,
        "time": time.time(),
        "message_type": message.metadata.message_type,
        "error": reason,
    }
    with path.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
