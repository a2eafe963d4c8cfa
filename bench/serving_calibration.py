"""Service times of the two DvD serving pools measured on this machine, written as the calibration file
the autoscaling simulator (bench/autoscaling_sim.py) loads instead of constants.

  vision    the vision server (workloads/serving/vision.py) on dvd_serving.py's small random InternVL
            (224x224 tiles, ViR on, bfloat16 as beside vLLM): one request at a time, images of 1, 3,
            5, 7 and 13 tiles (thumbnail included) → seconds = intercept + per_tile * tiles; then 4
            clients sending 5-tile images (batched by the server) → work_per_tile, replica-seconds
            per tile at saturation
  language  vLLM's CPU OpenAI server on the same checkpoint, run as the DvD language pool
            (--enable-mm-embeds): time to first token (/v1/completions, token-id prompts,
            max_tokens=1) over contexts of 64..2048 tokens → prefill = intercept + per_token * context;
            B = 1..16 concurrent requests of 64 tokens (ignore_eos), (latency - ttft) / 63 of the
            batch → decode_step = intercept + per_sequence * B (seconds per step of the whole batch)

  python bench/serving_calibration.py                 # → bench/calibration/cpu.json, about 2 minutes
  python bench/serving_calibration.py --quick --out /tmp/cal.json    # fewer points, a smoke test

Run it by absolute path or from another folder (the repo's operator/ shadows the standard library's
module when the repo root is first on sys.path). Each point is the median of --repeats runs, every
request a new image or new token ids (vLLM's prefix cache never hits); fits are least squares over the
medians. One server runs at a time, with dvd_serving.py's thread settings (its docstring says why):
OMP_NUM_THREADS=1 for the vision server and for vLLM. Headline rows go to bench/results.csv."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dvd_serving
import results

from vlmop.operator.localapi.loopback import free_port
from vlmop.workloads.serving.images import grid
from vlmop.workloads.serving.model import save_tiny, small_config

OUT = Path(__file__).resolve().parent / "calibration" / "cpu.json"
MAX_TILES = 12  # the vision server's --max-tiles: room for the 12 + thumbnail point
SATURATION_CLIENTS, SATURATION_TILES = 4, 5
DECODE_PROMPT = 16  # tokens: the decode runs' prefill stays small
TIMEOUT = aiohttp.ClientTimeout(total=600)


@contextmanager
def servers(work: Path, threads: int) -> Iterator[dvd_serving.Processes]:
    processes = dvd_serving.Processes(work, threads)
    try:
        yield processes
    finally:
        processes.stop()


def fit(samples: list[list[float]]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through (x, seconds) points."""
    slope, intercept = statistics.linear_regression([x for x, _ in samples], [y for _, y in samples])
    return intercept, slope


def medians(points: list[int], measure: Callable[[int], float], repeats: int) -> dict[str, Any]:
    """measure(x) `repeats` times per point: the medians (what is fitted) and every run. Rounds over all
    points, so a burst of load from elsewhere on the machine spoils one run of several points, not a
    point's every run."""
    raw: dict[int, list[float]] = {x: [] for x in points}
    for _ in range(repeats):
        for x in points:
            raw[x].append(measure(x))
    return {"samples": [[x, statistics.median(runs)] for x, runs in raw.items()],
            "runs": [[x, *runs] for x, runs in raw.items()]}  # fmt: skip


async def post_seconds(session: aiohttp.ClientSession, url: str, **payload: Any) -> float:
    started = time.perf_counter()
    async with session.post(url, **payload) as reply:
        await reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{url}: status {reply.status}: {await reply.text()}")
    return time.perf_counter() - started


# --- vision pool -------------------------------------------------------------------------------------


def tiled_png(tiles: int, side: int, seed: int) -> bytes:
    """A PNG the server cuts into `tiles` tiles: a row of tiles - 1 (a thumbnail is added to any grid
    of more than one), or one tile."""
    columns = tiles - 1 if tiles > 1 else 1
    assert grid(columns * side, side, side, MAX_TILES) == (columns, 1), tiles
    return dvd_serving.png(columns * side, side, seed)


def vision(model: Path, work: Path, args: argparse.Namespace, seeds: Iterator[int]) -> dict[str, Any]:
    side = int(small_config().vision_config.image_size[0])
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/encode"
    with servers(work, args.threads) as processes:
        processes.vlmop("vision", ["--model", str(model), "--max-tiles", str(MAX_TILES), "--dtype", "auto"],
                        port)  # fmt: skip

        async def one(tiles: int) -> float:
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
                return await post_seconds(session, url, data=tiled_png(tiles, side, next(seeds)))

        for tiles in args.tiles:  # warm up every batch shape first
            asyncio.run(one(tiles))
        unloaded = medians(args.tiles, lambda tiles: asyncio.run(one(tiles)), args.repeats)

        def saturated(clients: int) -> float:
            count = args.saturation_requests
            bodies = [tiled_png(SATURATION_TILES, side, next(seeds)) for _ in range(count + 2)]  # 2 warm up
            elapsed, _latencies = asyncio.run(dvd_serving.load(url, bodies, clients))
            return elapsed / (count * SATURATION_TILES)

        saturation = medians([SATURATION_CLIENTS], saturated, args.repeats)
    intercept, per_tile = fit(unloaded["samples"])
    return {"unloaded": {"intercept": intercept, "per_tile": per_tile, **unloaded},
            "work_per_tile": saturation["samples"][0][1],
            "saturation": {"clients": SATURATION_CLIENTS, "tiles_per_request": SATURATION_TILES,
                           "requests": args.saturation_requests,
                           "seconds_per_tile_runs": saturation["runs"][0][1:]}}  # fmt: skip


# --- language pool -----------------------------------------------------------------------------------


def prompt(tokens: int, rng: random.Random) -> list[int]:
    """Random lowercase letters as byte-tokenizer ids (byte + 3): a new prompt each time, so the prefix
    cache misses."""
    return [rng.randrange(ord("a"), ord("z") + 1) + 3 for _ in range(tokens)]


def completion(ids: list[int], max_tokens: int) -> dict[str, Any]:
    return {"model": "vlm", "prompt": ids, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}


def quadratic(samples: list[list[float]]) -> dict[str, float]:
    """seconds = intercept + per_token * n + per_token2 * n^2 (attention's share grows with the context:
    the linear fit's intercept can come out below 0)."""
    n = torch.tensor([x for x, _ in samples], dtype=torch.float64)[:, None]
    y = torch.tensor([y for _, y in samples], dtype=torch.float64)[:, None]
    a, b, c = torch.linalg.lstsq(torch.cat([n**0, n, n**2], 1), y).solution.flatten().tolist()
    return {"intercept": a, "per_token": b, "per_token2": c}


def language(model: Path, work: Path, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/completions"
    with servers(work, args.threads) as processes:
        processes.vllm(model, port, ["--enable-mm-embeds"], args.vllm_threads)  # the DvD pool's command

        async def together(batch: int, context: int, tokens: int) -> float:
            """Seconds until all of `batch` concurrent requests are answered."""
            requests = [completion(prompt(context, rng), tokens) for _ in range(batch)]
            started = time.perf_counter()
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
                await asyncio.gather(*(post_seconds(session, url, json=r) for r in requests))
            return time.perf_counter() - started

        def ttft(context: int) -> float:
            return asyncio.run(together(1, context, 1))

        def step(batch: int) -> float:
            """(latency - ttft) / (tokens - 1) of the batch as a whole: unlike stream chunk times, immune
            to chunks the client reads late, all at once."""
            first = asyncio.run(together(batch, DECODE_PROMPT, 1))
            whole = asyncio.run(together(batch, DECODE_PROMPT, args.decode_tokens))
            return (whole - first) / (args.decode_tokens - 1)

        for context in args.contexts:  # warm up every shape first
            ttft(context)
        prefill = medians(args.contexts, ttft, args.repeats)
        for batch in args.batches:
            asyncio.run(together(batch, DECODE_PROMPT, 8))
        steps = medians(args.batches, step, args.repeats)
    (prefill_at_0, per_token), (step_at_0, per_sequence) = fit(prefill["samples"]), fit(steps["samples"])
    return {"prefill": {"intercept": prefill_at_0, "per_token": per_token, **prefill,
                        "quadratic": quadratic(prefill["samples"])},
            "decode_step": {"intercept": step_at_0, "per_sequence": per_sequence,
                            "prompt_tokens": DECODE_PROMPT, "tokens_per_sequence": args.decode_tokens,
                            **steps}}  # fmt: skip


# --- output ------------------------------------------------------------------------------------------


def how(args: argparse.Namespace) -> str:
    return (
        "dvd_serving.py's small random InternVL (224x224 tiles, 4-layer ViT of width 256, 4-layer Qwen2 of "
        "width 512): the vision server (bfloat16, ViR on) and vLLM's CPU server (--dtype auto: bfloat16) as "
        f"the DvD pools run them, one at a time, OMP_NUM_THREADS={args.threads} (vision) and "
        f"{args.vllm_threads} (vLLM). Every point is the median of {args.repeats} runs after a warm-up, with "
        "fresh images and token ids; intercepts and slopes are least-squares fits over those medians. "
        f"work_per_tile is elapsed / tiles with {SATURATION_CLIENTS} clients sending {SATURATION_TILES}-tile "
        f"images; a decode step is (latency - ttft) / {args.decode_tokens - 1} of B concurrent "
        f"{args.decode_tokens}-token requests."
    )


def record(calibration: dict[str, Any], variant: str) -> None:
    vision, lm = calibration["vision"], calibration["language"]
    results.append("serving_calibration", f"vision {variant}", {
        "intercept_ms": 1000 * vision["unloaded"]["intercept"],
        "per_tile_ms": 1000 * vision["unloaded"]["per_tile"],
        "work_per_tile_ms": 1000 * vision["work_per_tile"],
    })  # fmt: skip
    results.append("serving_calibration", f"language {variant}", {
        "prefill_intercept_ms": 1000 * lm["prefill"]["intercept"],
        "prefill_per_token_us": 1e6 * lm["prefill"]["per_token"],
        "step_intercept_ms": 1000 * lm["decode_step"]["intercept"],
        "step_per_sequence_ms": 1000 * lm["decode_step"]["per_sequence"],
    })  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--quick", action="store_true", help="fewer points and repetitions (a smoke test)")
    p.add_argument("--repeats", type=int, default=None, help="runs per point (default 5, --quick 2)")
    p.add_argument("--threads", type=int, default=1, help="OMP threads, vision server")
    p.add_argument("--vllm-threads", type=int, default=1, help="OMP threads, vLLM")
    args = p.parse_args()
    quick = args.quick
    args.repeats = args.repeats or (2 if quick else 5)
    args.tiles = [1, 5, 13] if quick else [1, 3, 5, 7, 13]
    args.contexts = [64, 512, 2048] if quick else [64, 256, 512, 1024, 2048]
    args.batches = [1, 4, 16] if quick else [1, 2, 4, 8, 16]
    args.decode_tokens = 32 if quick else 64
    args.saturation_requests = 8 if quick else 24
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
        work = Path(tmp)
        model = save_tiny(work / "model", config=small_config())
        calibration = {
            "device": results.device(),
            "taken": datetime.datetime.now(tz=datetime.UTC).isoformat(timespec="seconds"),
            "command": "python bench/serving_calibration.py" + (" --quick" if quick else ""),
            "how": how(args),
            "vision": vision(model, work, args, iter(range(10**9))),
            "language": language(model, work, args, random.Random(0)),  # noqa: S311 (prompts, not secrets)
        }
    calibration["seconds"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(calibration, indent=2) + "\n")
    print(f"wrote {args.out} in {calibration['seconds']} s")
    variant = f"small threads={args.threads} vllm-threads={args.vllm_threads}" + (" quick" if quick else "")
    record(calibration, variant)


if __name__ == "__main__":
    main()
