"""Vision-language serving stacks compared on the same requests: requests/s and p50/p99 latency at
several client concurrencies.

  vllm-dvd         DvD on vLLM: gateway → vision server → `vllm serve --enable-mm-embeds` (the
                   features as image_embeds parts), what a DvDDeployment runs
  vllm-coupled     `vllm serve` of the whole checkpoint, images as image_url parts straight to it (what
                   a user would run instead), tiling like the vision server (--mm-processor-kwargs)
  standin          DvD with vlmop's transformers stand-in as the language pool
  standin-coupled  `gateway --coupled`: the stand-in's two halves in one process

  python bench/dvd_serving.py                              # small model, all but standin-coupled
  python bench/dvd_serving.py --stacks vllm-dvd --clients 4 --requests 16

Each request is a different 448x224 image (a random half and a flat half, new pixels every request:
no cache hits) → two 224 tiles and a thumbnail, and a short question; --max-tokens greedy tokens.
The vision server keeps ViR on (the flat tile costs 16 tokens instead of 64); coupled vLLM has none.
vLLM runs as operator/localapi/vllm_serve.py (the CPU build's `vllm serve`, .venv-vllm), `--dtype auto`.

Process settings (each measured by A/B on 2 cores, README "Benchmarks"): vlmop's processes get
OMP_NUM_THREADS --threads (1); vllm-dvd's vLLM one thread (--dvd-vllm-threads: with 2 it stalls on
the core the vision server computes on) and a vision server in vLLM's dtype (--vision-dtype auto:
bfloat16 here, the ViT twice as fast as in float32); coupled vLLM has the machine (2 threads)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results

from vlmop.operator.localapi import engines
from vlmop.operator.localapi.loopback import free_port, wait_ready
from vlmop.workloads.serving.model import save_tiny, small_config, tiny_config

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("vllm-dvd", "vllm-coupled", "standin", "standin-coupled")


def png(width: int, height: int, seed: int) -> bytes:
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    half = (torch.rand(height, width // 2, 3, generator=generator) * 255).byte()  # detailed | flat
    pixels = torch.cat([half, torch.full_like(half, 128)], dim=1)
    out = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(out, "PNG")
    return out.getvalue()


def image(width: int, height: int, seed: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png(width, height, seed)).decode()


def body(url: str, max_tokens: int) -> dict[str, Any]:
    question = [{"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": "Describe the picture."}]  # fmt: skip
    return {"model": "vlm", "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens, "temperature": 0}  # fmt: skip


class Processes:
    """Servers started for one stack; each in its own session, so vLLM's engine and worker children
    stop with it."""

    def __init__(self, work: Path, threads: int) -> None:
        self.work, self.threads, self.running = work, threads, list[subprocess.Popen[bytes]]()

    def start(self, name: str, command: list[str], env: dict[str, str], ready: str, timeout: float) -> None:
        log = self.work / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | env
        process = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=self.work)  # fmt: skip
        self.running.append(process)
        wait_ready(ready, process, log, timeout)

    def vlmop(self, module: str, args: list[str], port: int) -> None:
        command = [sys.executable, "-m", f"vlmop.workloads.serving.{module}", *args, "--port", str(port)]
        self.start(module, command, {"OMP_NUM_THREADS": str(self.threads)},
                   f"http://127.0.0.1:{port}/health", 120)  # fmt: skip

    def vllm(self, model: Path, port: int, extra: list[str], threads: int) -> None:
        command = [*engines.serve(), str(model),
                   "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "vlm",
                   "--tensor-parallel-size", "1", "--dtype", "auto", *extra]  # fmt: skip
        env = engines.CPU_ENV | {"OMP_NUM_THREADS": str(threads)}
        self.start("vllm", command, env, f"http://127.0.0.1:{port}/health", 300)

    def stop(self) -> None:
        for process in self.running:
            process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


@contextmanager
def stack(name: str, model: Path, work: Path, args: argparse.Namespace) -> Iterator[str]:
    """Start `name`'s servers; yields its chat completions URL."""
    processes = Processes(work, args.threads)
    try:
        port = free_port()
        if name == "vllm-coupled":
            tiling = json.dumps({"crop_to_patches": True, "max_patches": args.max_tiles})
            processes.vllm(model, port, ["--mm-processor-kwargs", tiling], args.coupled_vllm_threads)
        elif name == "standin-coupled":
            processes.vlmop("gateway", ["--coupled", str(model)], port)
        else:
            vision, language = free_port(), free_port()
            dtype = args.vision_dtype if name == "vllm-dvd" else "float32"  # the stand-in LM is fp32
            processes.vlmop("vision", ["--model", str(model), "--max-tiles", str(args.max_tiles),
                                       "--dtype", dtype, *args.vision_args.split()], vision)  # fmt: skip
            pools = ["--vision-url", f"http://127.0.0.1:{vision}", "--language-url",
                     f"http://127.0.0.1:{language}"]  # fmt: skip
            if name == "vllm-dvd":  # the language pool's command as the operator writes it
                processes.vllm(model, language, ["--enable-mm-embeds"], args.dvd_vllm_threads)
                pools += ["--language-protocol", "vllm", "--model-config", str(model / "config.json")]
            else:
                processes.vlmop("language", ["--model", str(model)], language)
            processes.vlmop("gateway", pools, port)
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        processes.stop()


def settings(name: str, args: argparse.Namespace) -> str:
    """What a stack's row depends on beyond the shared request shape."""
    if name == "vllm-coupled":
        return f"vllm-threads={args.coupled_vllm_threads}"
    if name == "vllm-dvd":
        return f"vision-{args.vision_dtype} vllm-threads={args.dvd_vllm_threads}"
    return f"threads={args.threads}"


async def load(url: str, bodies: list[Any], concurrency: int) -> tuple[float, list[float]]:
    """`concurrency` clients send `bodies` (JSON, or bytes as they are) back to back, each once; the
    first two warm up."""
    latencies: list[float] = []
    queue = list(reversed(bodies[2:]))

    async def post(session: aiohttp.ClientSession, request: Any) -> None:
        payload = {"data": request} if isinstance(request, bytes) else {"json": request}
        async with session.post(url, **payload) as reply:
            await reply.read()
            if reply.status != 200:
                raise RuntimeError(f"status {reply.status}: {await reply.text()}")

    async def client(session: aiohttp.ClientSession) -> None:
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            await post(session, request)
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for request in bodies[:2]:
            await post(session, request)
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return time.perf_counter() - began, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", choices=["tiny", "small"], default="small")
    p.add_argument("--stacks", default="vllm-dvd,vllm-coupled,standin", help=f"of {', '.join(STACKS)}")
    p.add_argument("--clients", default="1,4,16", help="concurrency levels")
    p.add_argument("--requests", type=int, default=48, help="per concurrency level")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--max-tiles", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="OMP threads per vlmop server process")
    p.add_argument("--vision-dtype", default="auto", help="vllm-dvd's vision server (auto: as vLLM's)")
    p.add_argument("--dvd-vllm-threads", type=int, default=1, help="OMP threads, vllm-dvd's vLLM")
    p.add_argument("--coupled-vllm-threads", type=int, default=2, help="OMP threads, coupled vLLM")
    p.add_argument("--vision-args", default="", help="more vision server flags (A/B runs)")
    p.add_argument("--tag", default="", help="appended to the results' variant (A/B runs)")
    args = p.parse_args()
    stacks, clients = args.stacks.split(","), [int(c) for c in args.clients.split(",")]
    if unknown := set(stacks) - set(STACKS):
        p.error(f"unknown stacks {sorted(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="dvd-bench-"))
    model = save_tiny(work / "model", config=small_config() if args.size == "small" else tiny_config())
    side = 224 if args.size == "small" else 32
    seeds = iter(range(10**9))  # every request of every run a new image
    shape = f"max_tokens={args.max_tokens} max_tiles={args.max_tiles}"
    for name in stacks:
        with stack(name, model, work, args) as url:
            for concurrency in clients:
                bodies = [body(image(2 * side, side, next(seeds)), args.max_tokens)
                          for _ in range(args.requests + 2)]  # fmt: skip
                elapsed, latencies = asyncio.run(load(url, bodies, concurrency))
                variant = f"{args.size} {name} c={concurrency} {settings(name, args)} {shape} {args.tag}"
                results.append("dvd_serving", variant.strip(), {
                    "requests_per_second": len(latencies) / elapsed,
                    "p50_ms": 1000 * statistics.median(latencies),
                    "p99_ms": 1000 * percentile(latencies, 0.99),
                })  # fmt: skip


if __name__ == "__main__":
    main()
