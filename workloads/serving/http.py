"""Reading request bodies with a deadline: a client that sends its headers and then trickles (or
stops sending) the body gets 408 instead of holding a connection and a handler forever."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

READ_TIMEOUT = 30.0  # seconds for the whole body, once the headers are in


async def body(request: web.Request, timeout: float = READ_TIMEOUT) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the request body did not arrive within {timeout:g} s") from None


async def json_body(request: web.Request, timeout: float = READ_TIMEOUT) -> Any:
    """The body as JSON; 400 when it is not, 408 when it is too slow."""
    data = await body(request, timeout)
    try:
        return json.loads(data)
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
