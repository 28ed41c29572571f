"""The coordinator's grid wrapper: counts payload bytes, and a failed hub stops the job."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from healthmesh.errors import FederationError
from healthmesh.federation.counting import CountingGrid


@pytest.fixture(autouse=True)
def task_identity() -> Iterator[None]:
    before = TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = before


class EchoGrid:
    """Answers each message with its own content, or with an error for the nodes in ``refuse``."""

    def __init__(self, refuse: set[int]) -> None:
        self.refuse = refuse

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        replies = []
        for message in messages:
            if message.metadata.dst_node_id in self.refuse:
                replies.append(Message(Error(code=2, reason="hub refused"), reply_to=message))
            else:
                replies.append(Message(message.content, reply_to=message))
        return replies


def _messages() -> list[Message]:
    content = RecordDict(
        {"arrays": ArrayRecord({"coef": Array(np.zeros(10))}), "config": ConfigRecord({"a": 1})}
    )
    return [Message(content, dst_node_id=node, message_type="train") for node in (1, 2)]


def test_bytes_are_counted_both_ways() -> None:
    grid = CountingGrid(EchoGrid(refuse=set()))  # type: ignore[arg-type]
    replies = list(grid.send_and_receive(_messages()))
    assert len(replies) == 2 and grid.messages == 4
    assert grid.bytes_sent == grid.bytes_received > 2 * 80  # two copies of 10 float64s at least


def test_a_refusing_hub_stops_the_job() -> None:
    grid = CountingGrid(EchoGrid(refuse={2}))  # type: ignore[arg-type]
    with pytest.raises(FederationError, match="hub refused"):
        grid.send_and_receive(_messages())
