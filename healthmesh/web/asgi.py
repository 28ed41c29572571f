"""ASGI helpers both services use (the hub's API and the network coordinator), light to import."""

from __future__ import annotations

from starlette.types import Message, Receive

__all__ = ["replaying"]


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app ``body`` (already read by a guard) once, then the rest of
    the connection's messages (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
