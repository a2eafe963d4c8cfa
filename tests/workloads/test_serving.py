"""Decoupled serving end to end on CPU over real HTTP on loopback, with a tiny random InternVL checkpoint
saved locally: gateway → vision server → language server. The language server is vlmop's stand-in
for vLLM (vlmop.workloads.serving.language, transformers), not vLLM: vLLM's CPU build is not installed
here. The same checkpoint served coupled in one process gives the same completion, so the features
cross the wire unchanged; ViR spends fewer tokens on flat tiles; malformed, oversized and
unauthorised requests get 4xx and every server keeps serving."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from vlmop.workloads.serving import gateway, language, vision
from vlmop.workloads.serving.features import Features
from vlmop.workloads.serving.images import Limits
from vlmop.workloads.serving.model import save_tiny, tiny_config

LIMITS = Limits(max_bytes=200_000, max_pixels=4096 * 4096)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("internvl-tiny"))


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def flat(width: int = 64, height: int = 32) -> bytes:
    return png(Image.new("RGB", (width, height), (120, 130, 140)))


def detailed(width: int = 64, height: int = 32) -> bytes:
    torch.manual_seed(0)
    return png(Image.fromarray((torch.rand(height, width, 3) * 255).byte().numpy()))


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def ask(image: bytes | str, text: str = "What is in the picture?", **extra: Any) -> dict[str, Any]:
    url = image if isinstance(image, str) else data_uri(image)
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0, **extra}


@pytest.fixture
async def pools(checkpoint: Path) -> AsyncIterator[tuple[TestClient[Any, Any], TestClient[Any, Any]]]:
    """The vision and language servers, each on its own loopback port."""
    vision_service = vision.VisionService(checkpoint, vision.VisionSettings(max_tiles=4, limits=LIMITS))
    async with (
        TestClient(TestServer(vision.app(vision_service))) as v,
        TestClient(TestServer(language.app(language.LanguageService(checkpoint)))) as lm,
    ):
        yield v, lm


@pytest.fixture
async def client(
    pools: tuple[TestClient[Any, Any], TestClient[Any, Any]],
) -> AsyncIterator[TestClient[Any, Any]]:
    v, lm = pools
    async with aiohttp.ClientSession() as session:
        front = gateway.Gateway(
            gateway.VisionClient(session, str(v.make_url(""))),
            gateway.LanguageClient(session, str(lm.make_url(""))),
            gateway.GatewaySettings(limits=LIMITS, max_images=2, api_key="sk-test", read_timeout=0.5),
        )
        async with TestClient(TestServer(front.app()), headers={"Authorization": "Bearer sk-test"}) as c:
            yield c


async def test_an_image_prompt_completes_through_both_pools_as_it_would_coupled(
    client: TestClient[Any, Any], checkpoint: Path
) -> None:
    reply = await client.post("/v1/chat/completions", json=ask(detailed()))
    assert reply.status == 200, await reply.text()
    body = await reply.json()
    choice = body["choices"][0]
    assert body["object"] == "chat.completion" and choice["finish_reason"] in ("stop", "length")
    assert isinstance(choice["message"]["content"], str)

    coupled = gateway.Gateway(
        vision.VisionService(checkpoint, vision.VisionSettings(max_tiles=4, limits=LIMITS)),
        language.LanguageService(checkpoint),
        gateway.GatewaySettings(limits=LIMITS),
    )
    async with TestClient(TestServer(coupled.app())) as one_process:
        same = await (await one_process.post("/v1/chat/completions", json=ask(detailed()))).json()
    assert same["choices"][0]["message"] == choice["message"]  # greedy: the features arrived intact


async def test_streaming_sends_the_same_text_as_events(client: TestClient[Any, Any]) -> None:
    whole = await (await client.post("/v1/chat/completions", json=ask(detailed(), seed=3))).json()
    reply = await client.post("/v1/chat/completions", json=ask(detailed(), seed=3, stream=True))
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/event-stream")
    events = [line[6:] for line in (await reply.text()).splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]


async def test_vir_spends_fewer_tokens_on_flat_tiles(
    pools: tuple[TestClient[Any, Any], TestClient[Any, Any]], checkpoint: Path
) -> None:
    v, _ = pools
    # 64x32 → two 32x32 tiles and a thumbnail; 16 tokens per tile at 1/4, 4 at 1/16.
    sharp = Features.from_bytes(await (await v.post("/v1/encode", data=detailed())).read())
    plain = Features.from_bytes(await (await v.post("/v1/encode", data=flat())).read())
    assert sharp.tile_tokens == [16, 16, 16] and plain.tile_tokens == [4, 4, 4]
    width = tiny_config().text_config.hidden_size
    assert plain.tokens.shape == (12, width) and sharp.tokens.shape == (48, width)
    no_vir = vision.VisionService(checkpoint, vision.VisionSettings(max_tiles=4, vir=False))
    assert (await no_vir.encode(flat())).tile_tokens == [16, 16, 16]


def bomb() -> bytes:
    """A PNG of 20000 x 20000 pixels in a few KiB: refused from its header, never decoded."""
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not JSON"),
        ({"messages": "hi"}, 400, "messages list"),
        (ask("data:image/png;base64,@@@@"), 400, "not valid base64"),
        (ask("https://example.com/cat.png"), 400, "remote image URLs are refused"),
        (ask(b"GIF89a but not really an image"), 400, "not a decodable image"),
        (ask(detailed(400, 400)), 413, "exceeds 200000 bytes"),
        (ask(bomb()), 413, "exceeds 16777216"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": data_uri(flat())}}] * 3,
                    }
                ]
            },
            400,
            "at most 2",
        ),
        ({**ask(flat()), "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
    ],
)
async def test_bad_requests_get_4xx_and_the_gateway_keeps_serving(
    client: TestClient[Any, Any], body: Any, status: int, words: str
) -> None:
    if isinstance(body, bytes):
        reply = await client.post("/v1/chat/completions", data=body)
    else:
        reply = await client.post("/v1/chat/completions", json=body)
    assert reply.status == status and words in await reply.text()
    assert (await client.post("/v1/chat/completions", json=ask(flat()))).status == 200


async def test_auth_and_the_pools_own_refusals(
    client: TestClient[Any, Any], pools: tuple[TestClient[Any, Any], TestClient[Any, Any]]
) -> None:
    anonymous = await client.post(
        "/v1/chat/completions", json=ask(flat()), headers={"Authorization": "Bearer x"}
    )
    assert anonymous.status == 401
    v, lm = pools
    assert (await v.post("/v1/encode", data=b"\x89PNG\r\n\x1a\n broken")).status == 400
    features = {"type": "image_features", "image_features": base64.b64encode(b"not safetensors").decode()}
    bad = await lm.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [features]}]})
    assert bad.status == 400 and "malformed features" in await bad.text()
    assert (await v.post("/v1/encode", data=flat())).status == 200
    metrics = await (await v.get("/metrics")).text()
    assert 'vlmop_serving_requests_total{code="400",component="vision"}' in metrics


async def test_a_slow_body_gets_408_and_the_gateway_keeps_serving(client: TestClient[Any, Any]) -> None:
    """Headers in, then the body trickles: the gateway answers 408 after its read timeout (0.5 s here)
    instead of holding the handler."""
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer sk-test\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")  # fmt: skip
    writer.write(head.encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert (await client.post("/v1/chat/completions", json=ask(flat()))).status == 200


async def test_concurrent_clients_get_no_error(client: TestClient[Any, Any]) -> None:
    """A small load test on loopback: 32 requests at once, half streaming; every one succeeds."""
    bodies = [ask(detailed() if i % 2 else flat(), stream=i % 4 < 2) for i in range(32)]
    replies = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for body in bodies))
    assert [r.status for r in replies] == [200] * 32
    for reply in replies:
        await reply.read()
