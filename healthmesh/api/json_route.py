"""Request bodies parsed with orjson: a patient's Bundle is some 70 KB of JSON, and the standard
library's parser cost more than scoring it."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from healthmesh.api.limits import BODY_SCOPE_KEY

__all__ = ["JsonRoute"]


class _OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                # What orjson refuses but JSON allows (integers over 64 bits): the standard parser
                # decides, and its JSONDecodeError becomes FastAPI's 422 answer.
                self._json = json.loads(body)
        return self._json


class JsonRoute(APIRoute):
    """The route class of every hub router."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            ours = _OrjsonRequest(request.scope, request.receive)
            body = request.scope.get(BODY_SCOPE_KEY)
            if body is not None:  # the request guard read it whole: no second gathering (and copy)
                ours._body = body
            return await handler(ours)

        return handle
