"""The language pool's CPU stand-in (`python -m vlmop.workloads.serving.language`): NOT vLLM. It serves
the language model of an InternVL checkpoint on transformers with the OpenAI chat-completions
contract the gateway speaks to vLLM, where each image arrives as its visual tokens, already encoded
by the vision pool: a content part {"type": "image_features", "image_features": <base64 safetensors,
see features.py>} in place of the image. vLLM's own multimodal-embedding input ("image_embeds") is a
base64 torch.save payload, which this project does not deserialise from the network; production
images put the same features in front of vLLM through its embedding input (see the README).

The prompt is the chat template below with each image's tokens spliced in as embeddings; sampling
runs token by token with the KV cache, one request at a time (vLLM batches; this does not), and with
"stream": true each token leaves as a server-sent event as soon as it is sampled.

POST /v1/chat/completions; GET /health, /v1/models, /metrics. Malformed requests get 400."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from aiohttp import web

from vlmop.workloads.pretrain.data import Tokenizer, tokenizer_for
from vlmop.workloads.serving import http
from vlmop.workloads.serving.features import Features
from vlmop.workloads.serving.metrics import Metrics, metrics_handler
from vlmop.workloads.serving.model import IMAGE_END_ID, IMAGE_START_ID, default_device, load_language

log = logging.getLogger(__name__)
MAX_TOKENS = 4096


class RequestError(ValueError):
    """What a client got wrong: HTTP 400."""


@dataclass(frozen=True)
class Chat:
    """A validated request: the conversation as text pieces and images' features, in order."""

    pieces: list[str | Features]
    messages: list[dict[str, Any]]  # as received, image parts holding their Features
    max_tokens: int = 64
    temperature: float = 1.0
    seed: int | None = None


def parse_chat(body: Any, decode_features: bool = True) -> Chat:
    """OpenAI chat messages → Chat; image parts must be image_features (features or base64)."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise RequestError("want a JSON object with a non-empty messages list")
    pieces: list[str | Features] = []
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise RequestError(f"messages[{i}]: want a role of system, user or assistant")
        pieces.append(f"<|{message['role']}|>\n")
        content, parts = message.get("content"), []
        for j, part in enumerate(
            [{"type": "text", "text": content}]
            if isinstance(content, str)
            else content
            if isinstance(content, list)
            else [None]
        ):
            where = f"messages[{i}].content[{j}]"
            if not isinstance(part, dict):
                raise RequestError(f"{where}: want a string content or a list of parts")
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                pieces.append(part["text"])
                parts.append({"type": "text", "text": part["text"]})
            elif part.get("type") == "image_features":
                value = part.get("image_features")
                try:
                    features = value if isinstance(value, Features) else Features.from_base64(str(value))
                except ValueError as error:
                    raise RequestError(f"{where}: {error}") from None
                pieces.append(features)
                parts.append({"type": "image_features", "image_features": features})
            else:
                raise RequestError(f"{where}: want a text or image_features part")
        pieces.append("\n")
        messages.append({"role": message["role"], "content": parts})
    pieces.append("<|assistant|>\n")
    max_tokens, temperature = body.get("max_tokens", 64), body.get("temperature", 1.0)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_TOKENS:
        raise RequestError(f"max_tokens must be an integer in 1..{MAX_TOKENS}")
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 10:
        raise RequestError("temperature must be in [0, 10]")
    seed = body.get("seed")
    return Chat(pieces, messages, max_tokens, float(temperature), seed if isinstance(seed, int) else None)


class LanguageService:
    """The language model, sampling one request at a time; used by the stand-in server and, in one
    process, by the coupled baseline."""

    def __init__(self, directory: Path, device: str | None = None) -> None:
        self.device = torch.device(device or default_device())
        self.model = load_language(directory).to(self.device)
        self.tokenizer: Tokenizer = tokenizer_for(directory)
        self.image_token = int(self.model.config.image_token_id)
        self.width = int(self.model.config.text_config.hidden_size)
        self.lock = threading.Lock()
        self.metrics = Metrics("language")

    def check(self, chat: Chat) -> None:
        for piece in chat.pieces:
            if isinstance(piece, Features) and piece.tokens.shape[1] != self.width:
                raise RequestError(
                    f"image features are {piece.tokens.shape[1]} wide; the model is {self.width}"
                )

    def embed(self, pieces: Sequence[str | Features]) -> torch.Tensor:
        """(1, L, D) input embeddings: text tokens embedded, image tokens replaced by the features (each
        image between <img> and </img>, InternVL's layout, which vLLM's processor writes too)."""
        ids, images = [self.tokenizer.bos_id], []
        for piece in pieces:
            if isinstance(piece, str):
                ids += self.tokenizer.encode(piece)
            else:
                ids += [IMAGE_START_ID, *[self.image_token] * piece.tokens.shape[0], IMAGE_END_ID]  # as vLLM
                images.append(piece.tokens)
        tokens = torch.tensor([ids], device=self.device)
        embeds = self.model.get_input_embeddings()(tokens)
        if images:
            mask = tokens == self.image_token
            embeds = embeds.masked_scatter(
                mask.unsqueeze(-1), torch.cat(images).to(self.device, embeds.dtype)
            )
        result: torch.Tensor = embeds
        return result

    @torch.no_grad()
    def generate(self, chat: Chat) -> Iterator[int]:
        """Sampled token ids, one at a time (the KV cache carries the prefix)."""
        with self.lock:
            seed = chat.seed
            generator = torch.Generator(self.device).manual_seed(seed) if seed is not None else None
            out = self.model(inputs_embeds=self.embed(chat.pieces), use_cache=True)
            for _ in range(chat.max_tokens):
                logits = out.logits[0, -1].float()
                if chat.temperature == 0:
                    token = int(logits.argmax())
                else:
                    probs = torch.softmax(logits / chat.temperature, -1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                yield token
                if token == self.tokenizer.eos_id:
                    return
                out = self.model(
                    input_ids=torch.tensor([[token]], device=self.device),
                    past_key_values=out.past_key_values,
                    use_cache=True,
                )

    async def stream(self, chat: Chat) -> AsyncIterator[str]:
        """The completion's text as it is sampled (a worker thread samples; this yields its deltas)."""
        loop, queue = asyncio.get_running_loop(), asyncio.Queue[int | None | BaseException]()

        def work() -> None:
            try:
                for token in self.generate(chat):
                    loop.call_soon_threadsafe(queue.put_nowait, token)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as error:
                loop.call_soon_threadsafe(queue.put_nowait, error)

        threading.Thread(target=work, daemon=True).start()
        ids: list[int] = []
        text = ""
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            ids.append(item)
            self.metrics.tokens.inc()
            now = self.tokenizer.decode([i for i in ids if i != self.tokenizer.eos_id])
            if now != text and not now.endswith("\ufffd"):  # wait for a multi-byte character's end
                yield now[len(text) :]
                text = now


def chunk(request_id: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "vlm",
        "choices": [choice],
        **extra,
    }


def completion(request_id: str, text: str, prompt_tokens: int, tokens: int, finish: str) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "vlm",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens,
        },
    }


async def respond(
    request: web.Request, chat: Chat, stream: bool, pieces: AsyncIterator[str], metrics: Metrics
) -> web.StreamResponse:
    """Write a completion from text deltas: one JSON body, or server-sent events as they come."""
    request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    started, parts = time.perf_counter(), []
    if not stream:
        async for piece in pieces:
            parts.append(piece)
        metrics.count(200)
        metrics.latency.observe(time.perf_counter() - started)
        return web.json_response(completion(request_id, "".join(parts), 0, len(parts), _finish(parts, chat)))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await _event(response, chunk(request_id, {"role": "assistant", "content": ""}))
    async for piece in pieces:
        parts.append(piece)
        await _event(response, chunk(request_id, {"content": piece}))
    await _event(response, chunk(request_id, {}, _finish(parts, chat)))
    await response.write(b"data: [DONE]\n\n")
    metrics.count(200)
    metrics.latency.observe(time.perf_counter() - started)
    return response


def _finish(parts: list[str], chat: Chat) -> str:
    return "length" if len(parts) >= chat.max_tokens else "stop"


async def _event(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(payload)}\n\n".encode())


def app(service: LanguageService, read_timeout: float = http.READ_TIMEOUT) -> web.Application:
    async def chat_completions(request: web.Request) -> web.StreamResponse:
        body = await http.json_body(request, read_timeout)  # 400 not JSON, 408 too slow
        try:
            chat = parse_chat(body)
            service.check(chat)
        except RequestError as error:
            service.metrics.count(400)
            raise web.HTTPBadRequest(text=str(error)) from None
        with service.metrics.in_flight.track_inprogress():
            return await respond(
                request, chat, bool(body.get("stream")), service.stream(chat), service.metrics
            )

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "vlm", "object": "model"}]})

    application = web.Application(client_max_size=64 * 2**20)  # features of many tiles
    application.router.add_post("/v1/chat/completions", chat_completions)
    application.router.add_get("/health", health)
    application.router.add_get("/v1/models", models)
    application.router.add_get("/metrics", metrics_handler)
    return application


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m vlmop.workloads.serving.language",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, required=True, help="InternVL checkpoint directory")
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a pod's server)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default=None, help="torch device; default: cuda when there is one")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(app(LanguageService(args.model, args.device)), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
