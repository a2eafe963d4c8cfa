"""The vision pool (`python -m vlmop.workloads.serving.vision`): image bytes in, visual tokens out.

Each image is tiled (InternVL's dynamic tiling), every tile goes through the ViT, then through
InternVL's pixel shuffle and the projector. With ViR (the Visual Resolution Router) each tile is
compressed either by 2 in each direction (1/4 of its tokens) or by 4 (1/16), one fused kernel pass
for both (vlmop.kernels.compress_tiles), each rate through its own projector.

The router: a checkpoint's trained router is InternVL3.5-Flash's; without one (as here) the score of
a tile is its visual detail, 1 - exp(-g / 0.03) for g the mean absolute difference of neighbouring
grey levels in [0, 1], so flat tiles (backgrounds, margins) take 1/16 and detailed ones keep 1/4.

Concurrent requests are batched: the batcher takes what is queued (up to --batch-size tiles, waiting
at most --batch-wait-ms for more) and encodes it in one forward pass.

POST /v1/encode (the image file as the body) → safetensors features (see features.py); 400 for a
malformed image, 413 for a too large one. GET /health, GET /metrics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from aiohttp import web

from vlmop.kernels import compress_tiles
from vlmop.workloads.serving import http, images
from vlmop.workloads.serving.features import MEDIA_TYPE, Features
from vlmop.workloads.serving.metrics import Metrics, metrics_handler
from vlmop.workloads.serving.model import VisionParts, default_device

log = logging.getLogger(__name__)
DETAIL_SCALE = 0.03


def detail_scores(tiles: torch.Tensor) -> torch.Tensor:
    """(T, 3, S, S) tiles in [0, 1] → (T,) detail in [0, 1): flat tiles score near 0."""
    grey = tiles.mean(1)
    g = (
        (grey[:, 1:] - grey[:, :-1]).abs().mean((1, 2))
        + (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean((1, 2))
    ) / 2
    return 1 - torch.exp(-g / DETAIL_SCALE)


@dataclass(frozen=True)
class VisionSettings:
    max_tiles: int = 12
    batch_size: int = 16
    batch_wait_ms: float = 5.0
    vir: bool = True
    vir_threshold: float = 0.5
    limits: images.Limits = field(default_factory=images.Limits)
    read_timeout: float = http.READ_TIMEOUT  # for a request's body, once its headers are in


class VisionService:
    """Tiling, batching and encoding; used by the vision server and, in one process, the coupled
    baseline."""

    def __init__(
        self,
        directory: Path,
        settings: VisionSettings,
        dtype: torch.dtype = torch.float32,
        device: str | None = None,
    ) -> None:
        self.device = torch.device(device or default_device())
        self.parts = VisionParts(directory, settings.vir).to(self.device, dtype)
        self.settings = settings
        # (tiles, rates, the caller's future, when it was queued)
        self.queue: (
            asyncio.Queue[tuple[torch.Tensor, torch.Tensor, asyncio.Future[Features], float]] | None
        ) = None
        self.metrics = Metrics("vision")
        self._batcher: asyncio.Task[None] | None = None

    async def encode(self, data: bytes) -> Features:
        """One image's features; ImageError for a bad image."""
        pixels, rates = await asyncio.to_thread(self._prepare, data)  # decoding and resizing: off the loop
        if self.queue is None:
            self.queue = asyncio.Queue()
            self._batcher = asyncio.create_task(self._batches())
        done: asyncio.Future[Features] = asyncio.get_running_loop().create_future()
        await self.queue.put((pixels, rates, done, time.perf_counter()))
        return await done

    def _prepare(self, data: bytes) -> tuple[torch.Tensor, torch.Tensor]:
        """The image's normalised tiles and each tile's compression rate."""
        image = images.open_checked(data, self.settings.limits)
        raw = images.tiles(image, self.parts.tile_size, self.settings.max_tiles)
        return images.normalise(raw), self.rates(raw)

    def rates(self, raw: torch.Tensor) -> torch.Tensor:
        """2 (1/4 of the tokens) or 4 (1/16) per tile; all 2 without ViR."""
        if not self.settings.vir:
            return torch.full((raw.shape[0],), 2)
        return torch.where(detail_scores(raw) > self.settings.vir_threshold, 2, 4)

    async def _batches(self) -> None:
        assert self.queue is not None
        while True:
            batch = [await self.queue.get()]
            deadline = time.monotonic() + self.settings.batch_wait_ms / 1000
            while sum(t.shape[0] for t, _, _, _ in batch) < self.settings.batch_size:
                try:
                    batch.append(
                        await asyncio.wait_for(self.queue.get(), max(deadline - time.monotonic(), 0))
                    )
                except TimeoutError:
                    break
            pixels = torch.cat([t for t, _, _, _ in batch])
            rates = torch.cat([r for _, r, _, _ in batch])
            started = time.perf_counter()
            for *_, queued in batch:
                self.metrics.queue.observe(started - queued)
            try:
                tokens, counts = await asyncio.to_thread(self._encode, pixels, rates)
            except Exception as error:  # one failed batch fails its requests, never the batcher
                for _, _, done, _ in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            finally:
                self.metrics.busy.inc(time.perf_counter() - started)
            self.metrics.batch_tiles.observe(pixels.shape[0])
            start = 0
            for tiles, _, done, _ in batch:
                n = tiles.shape[0]
                mine, tile_tokens = counts[start : start + n], counts[start : start + n].tolist()
                first = int(counts[:start].sum())
                if not done.done():
                    done.set_result(Features(tokens[first : first + int(mine.sum())], tile_tokens))
                start += n

    def _encode(self, pixels: torch.Tensor, rates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = self.parts
        width = int(parts.config.text_config.hidden_size)
        with torch.no_grad():
            grid = parts.features(pixels.to(self.device, non_blocking=True))
            packed = compress_tiles(grid, rates.to(self.device))
            by2 = parts.projector(packed.by2) if len(packed.by2) else grid.new_zeros(0, width)
            by4 = grid.new_zeros(0, width)
            if len(packed.by4):
                assert parts.projector16 is not None  # rates are all 2 without ViR
                by4 = parts.projector16(packed.by4)
            tokens = packed.merge(by2, by4)
        return tokens.cpu(), packed.offsets.diff().cpu()  # to the wire (and the batcher's slicing)


def auto_dtype(directory: Path, device: str) -> torch.dtype:
    """vLLM's `--dtype auto` for this checkpoint: its own dtype, float32 weights downcast to bfloat16
    (float16 on a GPU without it). Given the language pool's --dtype, the ViT computes in the LM's
    precision: a float32 ViT beside vLLM's bfloat16 LM took twice the time per image (CPU,
    bench/dvd_serving.py)."""
    config = json.loads((directory / "config.json").read_text())
    dtype: torch.dtype = getattr(torch, str(config.get("dtype") or config.get("torch_dtype") or "float32"))
    if dtype != torch.float32:
        return dtype
    cuda = device.startswith("cuda")
    return torch.float16 if cuda and not torch.cuda.is_bf16_supported() else torch.bfloat16


def app(service: VisionService) -> web.Application:
    async def encode(request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            data = await http.body(request, service.settings.read_timeout)
            features = await service.encode(data)
        except web.HTTPRequestEntityTooLarge:
            service.metrics.count(413)
            raise
        except images.ImageError as error:
            service.metrics.count(error.status)
            raise error.http() from None
        service.metrics.count(200)
        service.metrics.latency.observe(time.perf_counter() - started)
        service.metrics.tokens.inc(features.tokens.shape[0])
        return web.Response(body=features.to_bytes(), content_type=MEDIA_TYPE)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    application = web.Application(client_max_size=service.settings.limits.max_bytes + 1024)
    application.router.add_post("/v1/encode", encode)
    application.router.add_get("/health", health)
    application.router.add_get("/metrics", metrics_handler)
    return application


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m vlmop.workloads.serving.vision",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, required=True, help="InternVL checkpoint directory")
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a pod's server)
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--max-tiles", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=16, help="most tiles in one forward pass")
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--no-vir", dest="vir", action="store_false")
    p.add_argument("--vir-threshold", type=float, default=0.5)
    p.add_argument("--max-image-bytes", type=int, default=images.Limits.max_bytes)
    p.add_argument("--max-image-pixels", type=int, default=images.Limits.max_pixels)
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="float32",
                   help="auto: as vLLM's (the checkpoint's; float32 weights in bfloat16)")  # fmt: skip
    p.add_argument("--device", default=None, help="torch device; default: cuda when there is one")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = VisionSettings(
        args.max_tiles,
        args.batch_size,
        args.batch_wait_ms,
        args.vir,
        args.vir_threshold,
        images.Limits(args.max_image_bytes, args.max_image_pixels),
    )
    device = args.device or default_device()
    dtype = auto_dtype(args.model, device) if args.dtype == "auto" else getattr(torch, args.dtype)
    service = VisionService(args.model, settings, dtype, device)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(app(service), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
