"""The gateway (`python -m vlmop.workloads.serving.gateway`): OpenAI-compatible
`POST /v1/chat/completions` (streaming and not) with images as `image_url` parts.

Each request's images (base64 data URIs; http(s) URLs only with --allow-remote-images) are checked
(count, bytes, and pixels from the header: no decompression bomb is decoded) and sent to the vision
pool all at once; their features then go with the text to the language pool, whose tokens stream back
to the client as they come. Requests are independent coroutines, so while one request's tokens are
being sampled the next one's images are being encoded: vision and language work overlap.

`--coupled MODEL` runs both halves in this process instead (the baseline the DvD benchmark compares).
Bearer auth when VLMOP_API_KEY is set. 400 malformed, 401 unauthorised, 413 too large, 502 a pool
failed, 504 over --request-timeout; the gateway keeps serving after each. GET /health, /metrics."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hmac
import io
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import torch
from aiohttp import web

from vlmop.workloads.serving import http, images
from vlmop.workloads.serving.features import MEDIA_TYPE, Features
from vlmop.workloads.serving.language import Chat, RequestError, parse_chat, respond
from vlmop.workloads.serving.metrics import Metrics, metrics_handler

log = logging.getLogger(__name__)


class PoolError(Exception):
    """A pool failed or answered out of contract: HTTP 502."""


class Vision(Protocol):
    async def encode(self, data: bytes) -> Features: ...


class Language(Protocol):
    def stream(self, chat: Chat) -> AsyncIterator[str]: ...


@dataclass(frozen=True)
class GatewaySettings:
    limits: images.Limits = field(default_factory=images.Limits)
    max_images: int = 8
    request_timeout: float = 120.0
    allow_remote_images: bool = False
    api_key: str | None = None
    read_timeout: float = http.READ_TIMEOUT  # for a request's body, once its headers are in
    width: int | None = None  # the language model's hidden size: features of another width are refused


class VisionClient:
    """The vision pool over HTTP (its Service balances the replicas)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url.rstrip("/") + "/v1/encode"

    async def encode(self, data: bytes) -> Features:
        try:
            async with self.session.post(self.url, data=data) as reply:
                body = await reply.read()
                if reply.status in (400, 413):  # the image's fault: the client hears why
                    raise images.ImageError(body.decode(errors="replace")[:500], reply.status)
                if reply.status != 200 or reply.content_type != MEDIA_TYPE:
                    raise PoolError(f"vision pool answered {reply.status}")
        except aiohttp.ClientError as error:
            raise PoolError(f"vision pool unreachable: {error}") from None
        try:
            return Features.from_bytes(body)
        except ValueError as error:
            raise PoolError(f"vision pool: {error}") from None


class LanguageClient:
    """The language pool over HTTP: the chat with each image's tokens in place, streamed back.
    protocol vlmop: an `image_features` part (safetensors, features.py) for vlmop's stand-in;
    vllm: vLLM's `image_embeds` part (base64 of torch.save, which `vllm serve --enable-mm-embeds`
    loads; the gateway only ever writes that format, never reads it)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, protocol: str = "vlmop") -> None:
        self.session, self.url = session, url.rstrip("/") + "/v1/chat/completions"
        self.protocol = protocol

    def body(self, chat: Chat) -> dict[str, Any]:
        messages = [
            {"role": m["role"], "content": [self._part(p) for p in m["content"]]} for m in chat.messages
        ]
        return {"model": "vlm", "messages": messages, "stream": True, "max_tokens": chat.max_tokens,
                "temperature": chat.temperature, "seed": chat.seed}  # fmt: skip

    def _part(self, part: dict[str, Any]) -> dict[str, Any]:
        if part["type"] != "image_features":
            return part
        features: Features = part["image_features"]
        if self.protocol == "vllm":
            buffer = io.BytesIO()
            torch.save(features.tokens, buffer)
            return {"type": "image_embeds", "image_embeds": base64.b64encode(buffer.getvalue()).decode()}
        return {"type": "image_features", "image_features": features.to_base64()}

    async def stream(self, chat: Chat) -> AsyncIterator[str]:
        body = self.body(chat)
        try:
            async with self.session.post(self.url, json=body) as reply:
                if reply.status != 200:
                    raise PoolError(f"language pool answered {reply.status}: {(await reply.text())[:300]}")
                async for line in reply.content:
                    if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                        continue
                    delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                    if delta:
                        yield delta
        except (aiohttp.ClientError, ValueError, KeyError, IndexError) as error:
            raise PoolError(f"language pool: {error}") from None


def image_bytes(url: Any, settings: GatewaySettings) -> bytes | str:
    """A data URI's bytes, or the http(s) URL to fetch when remote images are allowed."""
    if not isinstance(url, str):
        raise RequestError("image_url.url must be a string")
    if url.startswith(("http://", "https://")):
        if not settings.allow_remote_images:
            raise RequestError("remote image URLs are refused here: send a base64 data URI")
        return url
    head, comma, payload = url.partition(",")
    if not (url.startswith("data:image/") and comma and head.endswith(";base64")):
        raise RequestError("image_url must be a data:image/...;base64, URI")
    if len(payload) * 3 // 4 > settings.limits.max_bytes:
        raise images.ImageError(f"image exceeds {settings.limits.max_bytes} bytes", 413)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("image_url data is not valid base64") from None


class Gateway:
    def __init__(
        self,
        vision: Vision,
        language: Language,
        settings: GatewaySettings,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.vision, self.language, self.settings, self.session = vision, language, settings, session
        self.metrics = Metrics("gateway")

    async def fetch(self, url: str) -> bytes:
        if self.session is None:
            raise RequestError("remote images need a client session")
        limit = self.settings.limits.max_bytes
        try:
            async with self.session.get(url) as reply:
                if reply.status != 200:
                    raise RequestError(f"fetching the image answered {reply.status}")
                data = await reply.content.read(limit + 1)
        except aiohttp.ClientError as error:
            raise RequestError(f"fetching the image failed: {error}") from None
        if len(data) > limit:
            raise images.ImageError(f"image exceeds {limit} bytes", 413)
        return data

    async def chat(self, body: Any) -> tuple[Chat, bool]:
        """Validate, encode the images (all at once), and return the chat for the language pool."""
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise RequestError("want a JSON object with a messages list")
        found: list[tuple[dict[str, Any], bytes | str]] = []
        messages = []
        for message in body["messages"]:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                parts = []
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        url = (
                            (part.get("image_url") or {}).get("url")
                            if isinstance(part.get("image_url"), dict)
                            else None
                        )
                        slot: dict[str, Any] = {"type": "image_features"}
                        found.append((slot, image_bytes(url, self.settings)))
                        parts.append(slot)
                    else:
                        parts.append(part)
                message = {**message, "content": parts}
            messages.append(message)
        if len(found) > self.settings.max_images:
            raise RequestError(f"{len(found)} images; at most {self.settings.max_images} per request")
        datas = [data if isinstance(data, bytes) else await self.fetch(data) for _, data in found]
        for data in datas:
            images.check_header(data, self.settings.limits)
        features = await asyncio.gather(*(self.vision.encode(d) for d in datas))
        width = self.settings.width
        for feature in features:  # vLLM does not check: another width would be answered with garbage
            if width is not None and feature.tokens.shape[1] != width:
                raise PoolError(
                    f"the vision pool's features are {feature.tokens.shape[1]} wide; the language "
                    f"model is {width} wide: the pools serve different models"
                )
        for (slot, _), feature in zip(found, features, strict=True):
            slot["image_features"] = feature
        return parse_chat({**body, "messages": messages}), bool(body.get("stream"))

    def app(self) -> web.Application:
        async def chat_completions(request: web.Request) -> web.StreamResponse:
            self._authorise(request)
            with self.metrics.in_flight.track_inprogress():
                try:
                    async with asyncio.timeout(self.settings.request_timeout):
                        chat, stream = await self.chat(
                            await http.json_body(request, self.settings.read_timeout)
                        )
                        return await respond(request, chat, stream, self.language.stream(chat), self.metrics)
                except RequestError as error:
                    raise self._fail(web.HTTPBadRequest(text=str(error))) from None
                except (web.HTTPBadRequest, web.HTTPRequestTimeout) as error:  # the body: not JSON, too slow
                    raise self._fail(error) from None
                except images.ImageError as error:
                    raise self._fail(error.http()) from None
                except PoolError as error:
                    log.warning("%s", error)
                    raise self._fail(web.HTTPBadGateway(text=str(error))) from None
                except TimeoutError:
                    raise self._fail(web.HTTPGatewayTimeout(text="request timed out")) from None

        async def health(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        # Base64 grows the images by a third; the JSON around them is small.
        size = self.settings.max_images * self.settings.limits.max_bytes * 4 // 3 + 2**20
        application = web.Application(client_max_size=size)
        application.router.add_post("/v1/chat/completions", chat_completions)
        application.router.add_get("/health", health)
        application.router.add_get("/metrics", metrics_handler)
        return application

    def _authorise(self, request: web.Request) -> None:
        key = self.settings.api_key
        if key and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {key}"):
            raise self._fail(web.HTTPUnauthorized(text="missing or wrong API key"))

    def _fail(self, error: web.HTTPException) -> web.HTTPException:
        self.metrics.count(error.status)
        return error


def language_width(config: Path) -> int:
    """The language model's hidden size from an InternVL config.json (text_config.hidden_size)."""
    try:
        return int(json.loads(config.read_text())["text_config"]["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"--model-config {config}: no text_config.hidden_size ({error})") from None


async def serve(args: argparse.Namespace) -> None:
    settings = GatewaySettings(
        images.Limits(args.max_image_bytes, args.max_image_pixels),
        args.max_images,
        args.request_timeout,
        args.allow_remote_images,
        os.environ.get("VLMOP_API_KEY"),
        width=language_width(args.model_config) if args.model_config else None,
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        vision: Vision
        language: Language
        if args.coupled:
            from vlmop.workloads.serving.language import LanguageService
            from vlmop.workloads.serving.vision import VisionService, VisionSettings

            vision = VisionService(args.coupled, VisionSettings(limits=settings.limits))
            language = LanguageService(args.coupled)
        else:
            vision, language = (
                VisionClient(session, args.vision_url),
                LanguageClient(session, args.language_url, args.language_protocol),
            )
        runner = web.AppRunner(Gateway(vision, language, settings, session).app())
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port).start()
        log.info("gateway on %s:%d", args.host, args.port)
        stop = asyncio.Event()  # SIGTERM (a rolling update): stop listening, finish what is in flight
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m vlmop.workloads.serving.gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pools = p.add_mutually_exclusive_group(required=True)
    pools.add_argument("--vision-url", help="the vision pool's Service")
    pools.add_argument("--coupled", type=Path, help="serve this checkpoint in-process instead of the pools")
    p.add_argument("--language-url", help="the language pool's Service")
    p.add_argument(
        "--language-protocol",
        choices=["vlmop", "vllm"],
        default="vlmop",
        help="how image tokens reach the language pool (vllm: image_embeds)",
    )
    p.add_argument("--model-config", type=Path, help="the checkpoint's config.json: the LM width to check")
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a pod's server)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-image-bytes", type=int, default=images.Limits.max_bytes)
    p.add_argument("--max-image-pixels", type=int, default=images.Limits.max_pixels)
    p.add_argument("--max-images", type=int, default=8)
    p.add_argument("--request-timeout", type=float, default=120.0)
    p.add_argument("--allow-remote-images", action="store_true")
    args = p.parse_args(argv)
    if args.vision_url and not args.language_url:
        p.error("--vision-url needs --language-url")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
