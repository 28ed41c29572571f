"""The hub guard: nothing row-shaped leaves a hub, and handler errors leave without their text."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from healthmesh.errors import FederationError
from healthmesh.federation.guard import find_row_shaped, hub_guard, register_local_rows


def _arrays(**arrays: np.ndarray) -> RecordDict:
    return RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()})})


def test_model_parameters_pass() -> None:
    content = _arrays(coef=np.zeros(13), intercept=np.zeros(1))
    content["metrics"] = MetricRecord({"num-examples": 250, "train-loss": 0.41})
    assert find_row_shaped(content, local_rows=[250, 180, 70]) == []


@pytest.mark.parametrize("shape", [(250,), (250, 3), (3, 250)])
def test_array_with_a_dimension_of_local_rows_is_refused(shape: tuple[int, ...]) -> None:
    problems = find_row_shaped(_arrays(scores=np.zeros(shape)), local_rows=[250])
    assert problems and "number of local rows" in problems[0]


def test_list_of_local_rows_in_metrics_or_json_is_refused() -> None:
    metrics = RecordDict({"metrics": MetricRecord({"predictions": [0.1] * 40})})
    assert find_row_shaped(metrics, local_rows=[40])
    hidden = RecordDict(
        {"summary": ConfigRecord({"columns": json.dumps({"age": {"values": list(range(40))}})})}
    )
    assert find_row_shaped(hidden, local_rows=[40])


@pytest.mark.parametrize(
    "text",
    [
        "patient 1234567890",
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "kim@example.org",
        "born 1961-04-12",
        "800101-1234567",
    ],
)
def test_identifier_like_strings_are_refused(text: str) -> None:
    content = RecordDict({"site": ConfigRecord({"note": text})})
    assert find_row_shaped(content), text


def test_keys_naming_personal_data_are_refused() -> None:
    content = RecordDict({"metrics": MetricRecord({"person_id": 17.0})})
    assert any("personal data" in p for p in find_row_shaped(content))


def test_small_counts_must_be_suppressed() -> None:
    assert find_row_shaped(RecordDict({"counts": MetricRecord({"persons": 3})}), min_cell=5)
    assert (
        find_row_shaped(RecordDict({"counts": MetricRecord({"persons": 0, "male": -1, "female": 12})})) == []
    )


def test_text_arrays_are_refused() -> None:
    content = RecordDict({"arrays": ArrayRecord({"ids": Array(np.array(["a", "b"]))})})
    assert any("numeric" in p for p in find_row_shaped(content))


@pytest.fixture
def task_identity() -> Iterator[None]:
    # Messages built outside a running Flower task need a run id; restore what was there.
    before = TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = before


def _context(tmp_path: object) -> Context:
    return Context(
        run_id=1,
        node_id=1,
        node_config={"site": "north", "audit-dir": str(tmp_path)},
        state=RecordDict(),
        run_config={},
    )


def test_mod_refuses_a_row_shaped_reply_and_audits_it(task_identity: None, tmp_path) -> None:
    message = Message(
        RecordDict({"config": ConfigRecord({"job": "{}"})}), dst_node_id=1, message_type="train"
    )
    context = _context(tmp_path)

    def leaky_handler(msg: Message, ctx: Context) -> Message:
        register_local_rows(ctx, 120)
        return Message(_arrays(scores=np.zeros(120)), reply_to=msg)

    with pytest.raises(FederationError, match="refused to send a row-shaped reply"):
        hub_guard(message, context, leaky_handler)
    audit = [json.loads(line) for line in (tmp_path / "north.jsonl").read_text().splitlines()]
    assert audit[-1]["error"].startswith("hub north refused")


def test_mod_passes_parameters_and_hides_handler_error_text(task_identity: None, tmp_path) -> None:
    message = Message(
        RecordDict({"config": ConfigRecord({"job": "{}"})}), dst_node_id=1, message_type="train"
    )
    context = _context(tmp_path)

    def good_handler(msg: Message, ctx: Context) -> Message:
        register_local_rows(ctx, 120)
        return Message(_arrays(coef=np.ones(4), intercept=np.zeros(1)), reply_to=msg)

    reply = hub_guard(message, context, good_handler)
    assert reply.content["arrays"]["coef"].numpy().tolist() == [1.0, 1.0, 1.0, 1.0]

    def failing_handler(msg: Message, ctx: Context) -> Message:
        raise ValueError("row 17: age=83, name=Kim")

    with pytest.raises(FederationError) as caught:
        hub_guard(message, context, failing_handler)
    assert "Kim" not in str(caught.value) and "ValueError" in str(caught.value)
