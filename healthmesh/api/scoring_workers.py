"""Scoring worker processes: the in-memory Bundle path on every core.

A hub keeps one process on its database (DuckDB admits one writing process), and one Python
process scores on one core. Workers take the CPU-bound part of a scoring request (parse the
Bundle, map it in memory, compute covariates, predict) in separate processes; the service keeps
HTTP, tokens, the audit log and the database path. Each worker talks to the service over a
socket pair: length-prefixed frames, answers in request order.

    request frame:  {"model": ..., "as_of": ..., "top": ...} NEWLINE Bundle-JSON
    answer frame:   the answer's JSON, or nothing when the database path must decide

``ScoringWorkers`` starts each worker as ``python -c`` calling ``serve_worker(FD, MODELS_JSON)``.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import socket
import struct
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from healthmesh.errors import ConfigError

__all__ = ["ScoringWorkers", "score_body", "serve_worker"]

_LENGTH = struct.Struct("!I")
_WORKER = "import sys; from healthmesh.api.scoring_workers import serve_worker; serve_worker(int(sys.argv[1]), sys.argv[2])"
_READY = b"ready"


def score_body(
    scorer: Any, model: str, body: bytes | memoryview, as_of: date | None, top: int
) -> bytes | None:
    """The answer's JSON for a cleanly loading Bundle in ``body``, else None (the database path decides)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    answer = scorer.score_in_memory(document, as_of, top)
    return None if answer is None else orjson.dumps({"model": model, **answer})


class _Channel:
    """One worker: its process, its socket, and the futures of the requests it has not answered yet."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.pending: collections.deque[asyncio.Future[bytes | None]] = collections.deque()
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.sock.setblocking(False)
        reader, self.writer = await asyncio.open_connection(sock=self.sock, limit=2**24)
        self.reader_task = asyncio.get_running_loop().create_task(self._answers(reader))

    async def _answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                payload = await reader.readexactly(size) if size else b""
                waiter = self.pending.popleft()
                if not waiter.done():
                    waiter.set_result(payload or None)
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        # A worker that died answers nothing more: its requests go to the database path.
        while self.pending:
            waiter = self.pending.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self.writer = None

    def send(self, header: bytes, body: bytes) -> asyncio.Future[bytes | None]:
        """Send the frame ``header NEWLINE body``; the future is its answer."""
        waiter: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        if self.writer is None or self.writer.is_closing():
            waiter.set_result(None)
            return waiter
        self.pending.append(waiter)
        # The parts go out as they are (one gathered write): the Bundle is not copied into a frame.
        self.writer.writelines((_LENGTH.pack(len(header) + 1 + len(body)), header, b"\n", body))
        return waiter


class ScoringWorkers:
    """``processes`` workers, each with a warm scorer of every model in ``models`` (name -> folder)."""

    def __init__(self, models: dict[str, Path], processes: int, timeout_s: float = 120.0) -> None:
        self._channels: list[_Channel] = []
        self._opened = False
        self._lock: asyncio.Lock | None = None
        spec = orjson.dumps({name: str(Path(folder).resolve()) for name, folder in models.items()}).decode()
        try:
            for _ in range(processes):
                parent, child = socket.socketpair()
                process = subprocess.Popen(
                    [sys.executable, "-c", _WORKER, str(child.fileno()), spec], pass_fds=(child.fileno(),)
                )
                child.close()
                self._channels.append(_Channel(process, parent))
            for channel in self._channels:  # start-up: each loads its models, then says it is ready
                channel.sock.settimeout(timeout_s)
                if _receive(channel.sock) != _READY:
                    raise ConfigError("a scoring worker failed to start (see its output above)")
        except (OSError, TimeoutError) as error:
            self.close()
            raise ConfigError(f"scoring workers could not start: {error}") from error
        except ConfigError:
            self.close()
            raise

    async def score(self, model: str, body: bytes, as_of: date | None, top: int) -> bytes | None:
        """The answer's JSON from the least busy worker, or None when the database path must decide."""
        if not self._opened:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if not self._opened:
                    for channel in self._channels:
                        await channel.open()
                    self._opened = True
        channel = min(self._channels, key=lambda c: len(c.pending))
        header = orjson.dumps({"model": model, "as_of": as_of.isoformat() if as_of else None, "top": top})
        return await channel.send(header, body)

    def close(self) -> None:
        for channel in self._channels:
            if channel.writer is not None:
                channel.writer.close()
            channel.sock.close()
            channel.process.terminate()  # a worker holds no state worth a graceful end
        for channel in self._channels:
            try:
                channel.process.wait(10)
            except subprocess.TimeoutExpired:
                channel.process.kill()
                channel.process.wait(10)


def _receive(sock: socket.socket) -> bytes | None:
    """One frame from a blocking socket; None at end of file."""
    head = _exactly(sock, _LENGTH.size)
    if head is None:
        return None
    (size,) = _LENGTH.unpack(head)
    return _exactly(sock, size) if size else b""


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def serve_worker(fd: int, spec: str) -> None:
    """A worker's life: load the models, say ready, answer frames until the service closes the socket."""
    from healthmesh.risk import BundleScorer

    sock = socket.socket(fileno=fd)
    scorers = {name: BundleScorer(Path(folder)) for name, folder in orjson.loads(spec).items()}
    gc.collect()
    gc.freeze()  # the warm scorers stay out of the collector's sight (see create_app)
    # A parsed Bundle is thousands of containers freed by reference counting, not cycles: collect
    # the young generation less often (about 5% of a request's CPU at the default threshold).
    gc.set_threshold(100_000, 50, 50)
    _send(sock, _READY)
    while (frame := _receive(sock)) is not None:
        cut = frame.index(b"\n")
        # The Bundle is read where it lies in the frame (orjson parses a memoryview): no 70 KB copy.
        header, body = frame[:cut], memoryview(frame)[cut + 1 :]
        request = orjson.loads(header)
        as_of = date.fromisoformat(request["as_of"]) if request["as_of"] else None
        try:
            answer = score_body(scorers[request["model"]], request["model"], body, as_of, int(request["top"]))
        except Exception:  # the database path gives the authoritative answer, or the reason
            answer = None
        _send(sock, answer or b"")
