"""Serving parts on their own: InternVL's tile grid choice and the features wire format."""

from __future__ import annotations

import pytest
import torch

from vlmop.workloads.serving.features import Features
from vlmop.workloads.serving.images import grid


@pytest.mark.parametrize(
    ("size", "max_tiles", "expected"),
    [
        ((448, 448), 12, (1, 1)),  # square and small: one tile (a 2x2 grid would need 4x the pixels)
        ((1792, 1792), 12, (3, 3)),  # square and large: the tie goes to the largest square grid
        ((896, 448), 12, (2, 1)),  # landscape 2:1
        ((448, 1344), 12, (1, 3)),  # portrait 1:3
        ((4000, 100), 6, (6, 1)),  # wider than any grid: the widest allowed
    ],
)
def test_tile_grid_follows_internvl(size: tuple[int, int], max_tiles: int, expected: tuple[int, int]) -> None:
    assert grid(*size, 448, max_tiles) == expected


def test_features_round_trip_and_refuse_junk() -> None:
    sent = Features(torch.randn(20, 8, dtype=torch.bfloat16), [16, 4])
    got = Features.from_base64(sent.to_base64())
    assert torch.equal(got.tokens, sent.tokens) and got.tile_tokens == [16, 4]
    for junk in (b"", b"\x00" * 16, b"not safetensors at all"):
        with pytest.raises(ValueError, match="malformed"):
            Features.from_bytes(junk)
    mismatched = Features(torch.randn(20, 8), [16, 5]).to_bytes()  # counts that do not add up
    with pytest.raises(ValueError, match="matching tile_tokens"):
        Features.from_bytes(mismatched)
    with pytest.raises(ValueError, match="base64"):
        Features.from_base64("@@")


def test_the_vllm_protocol_sends_image_embeds() -> None:
    """What the gateway sends `vllm serve --enable-mm-embeds`: each image as an image_embeds part (the
    tokens, torch.save'd and base64-encoded). Read back here only, from our own bytes."""
    import base64
    import io

    from vlmop.workloads.serving.gateway import LanguageClient
    from vlmop.workloads.serving.language import parse_chat

    features = Features(torch.randn(20, 8), [16, 4])
    content = [{"type": "image_features", "image_features": features}, {"type": "text", "text": "what?"}]
    chat = parse_chat({"messages": [{"role": "user", "content": content}], "max_tokens": 5})
    body = LanguageClient(None, "http://lm:8000", protocol="vllm").body(chat)  # type: ignore[arg-type]
    image, text = body["messages"][0]["content"]
    assert image["type"] == "image_embeds" and text == {"type": "text", "text": "what?"}
    sent = torch.load(io.BytesIO(base64.b64decode(image["image_embeds"])), weights_only=True)
    assert torch.equal(sent, features.tokens) and body["stream"] is True and body["max_tokens"] == 5
