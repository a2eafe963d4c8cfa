"""Visual features on the wire between the pools: safetensors (a JSON header + raw little-endian
bytes; no pickle, nothing executed on load), one `features` tensor (tokens x LM width) in the
pool's dtype, with the tile count and per-tile token counts in the header's metadata."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import torch
from safetensors.torch import load, save

MEDIA_TYPE = "application/vnd.vlmop.features+safetensors"


@dataclass(frozen=True)
class Features:
    tokens: torch.Tensor  # (N, D): every tile's projected tokens, in tile order
    tile_tokens: list[int]  # tokens per tile (16 or 4 with ViR: each tile's compression)

    def to_bytes(self) -> bytes:
        meta = {"tile_tokens": json.dumps(self.tile_tokens)}
        return save({"features": self.tokens.contiguous()}, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        """Raises ValueError on anything that is not a well-formed features payload."""
        try:
            tensors = load(data)
            header_length = int.from_bytes(data[:8], "little")
            meta = json.loads(data[8 : 8 + header_length]).get("__metadata__") or {}
            tile_tokens = [int(n) for n in json.loads(meta.get("tile_tokens", "[]"))]
        except Exception as error:  # safetensors raises its own types on malformed input
            raise ValueError(f"malformed features payload: {error}") from None
        tokens = tensors.get("features")
        if tokens is None or tokens.dim() != 2 or sum(tile_tokens) != tokens.shape[0]:
            raise ValueError("features payload: want one (tokens, width) tensor matching tile_tokens")
        return cls(tokens, tile_tokens)

    def to_base64(self) -> str:
        return base64.b64encode(self.to_bytes()).decode()

    @classmethod
    def from_base64(cls, text: str) -> Features:
        try:
            raw = base64.b64decode(text, validate=True)
        except (ValueError, TypeError):
            raise ValueError("image_features is not base64") from None
        return cls.from_bytes(raw)
