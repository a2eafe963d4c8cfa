"""Decoupled vs coupled vision-language serving: requests/s and p50/p99 latency at several client
concurrencies. Decoupled = gateway → vision server → language server, three processes (DvD);
coupled = the same gateway code with both halves in one process (`gateway --coupled`). Each server
process gets OMP_NUM_THREADS (default 1), so on this 2-core machine the decoupled pools can use a
core each while the coupled process shares its cores between the two halves.

  python bench/dvd_serving.py                       # small InternVL-shaped model, 1/4/16 clients
  python bench/dvd_serving.py --size tiny --requests 32

The language pool here is vlmop's transformers stand-in (no vLLM on this machine). Each request is one
448x224 image (two 224 tiles and a thumbnail; ViR on) and a short question, max_tokens --max-tokens,
greedy."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results

from vlmop.operator.localapi.loopback import free_port, wait_ready
from vlmop.workloads.serving.model import save_tiny, small_config, tiny_config


def image(width: int, height: int) -> str:
    from PIL import Image

    torch.manual_seed(0)
    half = (torch.rand(height, width // 2, 3) * 255).byte()  # a detailed half and a flat half
    pixels = torch.cat([half, torch.full_like(half, 128)], dim=1)
    out = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def start(module: str, args: list[str], threads: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("TRITON_INTERPRET", None)
    return subprocess.Popen([sys.executable, "-m", f"vlmop.workloads.serving.{module}", *args], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip


async def load(url: str, body: dict[str, Any], concurrency: int, requests: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            async with session.post(url, json=body) as reply:
                await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"status {reply.status}")
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await client_warmup(session, url, body)
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return time.perf_counter() - began, latencies


async def client_warmup(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    for _ in range(2):
        async with session.post(url, json=body) as reply:
            await reply.read()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", choices=["tiny", "small"], default="small")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=48, help="per concurrency level")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="OMP threads per server process")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dvd-bench-"))
    model = save_tiny(work / "model", config=small_config() if args.size == "small" else tiny_config())
    side = 224 if args.size == "small" else 32
    question = [{"type": "image_url", "image_url": {"url": image(2 * side, side)}},
                {"type": "text", "text": "Describe the picture."}]  # fmt: skip
    body = {
        "messages": [{"role": "user", "content": question}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
    }
    for mode in ("decoupled", "coupled"):
        processes = []
        gateway = free_port()
        try:
            if mode == "decoupled":
                vision, language = free_port(), free_port()
                for module, port, extra in (
                    ("vision", vision, ["--max-tiles", "4"]),
                    ("language", language, []),
                ):
                    log = work / f"{module}.log"
                    processes.append(start(module, ["--model", str(model), "--port", str(port), *extra],
                                           args.threads, log))  # fmt: skip
                    wait_ready(f"http://127.0.0.1:{port}/health", processes[-1], log, 120)
                pools = [
                    "--vision-url",
                    f"http://127.0.0.1:{vision}",
                    "--language-url",
                    f"http://127.0.0.1:{language}",
                ]
                threads = 1
            else:
                pools, threads = ["--coupled", str(model)], args.threads
            log = work / f"gateway-{mode}.log"
            processes.append(start("gateway", [*pools, "--port", str(gateway)], threads, log))
            wait_ready(f"http://127.0.0.1:{gateway}/health", processes[-1], log, 120)
            for concurrency in args.concurrency:
                url = f"http://127.0.0.1:{gateway}/v1/chat/completions"
                elapsed, latencies = asyncio.run(load(url, body, concurrency, args.requests))
                variant = (
                    f"{args.size} {mode} c={concurrency} threads={args.threads} max_tokens={args.max_tokens}"
                )
                results.append("dvd_serving", variant, {
                    "requests_per_second": len(latencies) / elapsed,
                    "p50_ms": 1000 * statistics.median(latencies),
                    "p99_ms": 1000 * percentile(latencies, 0.99),
                })  # fmt: skip
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()
