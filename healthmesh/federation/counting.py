"""A Grid that counts what crosses the network (bytes of every message and reply) and fails loudly."""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo  # type: ignore[attr-defined]
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from healthmesh.errors import FederationError

__all__ = ["CountingGrid", "message_bytes"]


def message_bytes(message: Message) -> int:
    """Payload bytes of a message (its records as Flower counts them); 0 for an error reply."""
    if message.has_error():
        return 0
    return int(sum(record.count_bytes() for record in message.content.values()))


class CountingGrid(Grid):
    """Delegates to the real Grid and adds up payload bytes in both directions."""

    def __init__(self, inner: Grid) -> None:
        self.inner = inner
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages = 0

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        return self.inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self._count_out(messages)
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.inner.pull_messages(message_ids))
        self._count_in(replies)
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send and wait; a hub that refused or failed stops the job (no silent drop from an average)."""
        messages = list(messages)
        self._count_out(messages)
        replies = list(self.inner.send_and_receive(messages, timeout=timeout))
        self._count_in(replies)
        failed = [str(r.error.reason) for r in replies if r.has_error()]
        if failed:
            raise FederationError("; ".join(failed))
        if len(replies) < len(messages):
            raise FederationError(
                f"{len(messages) - len(replies)} of {len(messages)} hubs did not answer within {timeout} s"
            )
        return replies

    def _count_out(self, messages: list[Message]) -> None:
        self.messages += len(messages)
        self.bytes_sent += sum(message_bytes(m) for m in messages)

    def _count_in(self, replies: list[Message]) -> None:
        self.messages += len(replies)
        self.bytes_received += sum(message_bytes(m) for m in replies)
