"""A small OpenAI-compatible completions server on transformers (`python -m
vlmop.workloads.rl.rollout_server`): the rollout pool for CPU tests and small models. Production pools
run vLLM, which speaks the same /v1/completions.

- POST /v1/completions {"prompt": str, "n", "temperature", "max_tokens", "seed"?} → choices with text
  and, beyond OpenAI's fields, `token_ids` (so the trainer scores exactly the sampled tokens) and the
  server's `policy_version`.
- POST /v1/load_weights {"version": int, "path": dir} loads `<dir>/model.safetensors` (safetensors:
  no pickle) from under --weights-dir, the trainer's published weights; later samples carry `version`.
- GET /health, GET /v1/models. Malformed requests get 400 and the server keeps serving."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

import torch
from aiohttp import web
from safetensors.torch import load_file

from vlmop.workloads.pretrain import models
from vlmop.workloads.pretrain.data import Tokenizer, tokenizer_for

log = logging.getLogger(__name__)
MAX_N, MAX_TOKENS = 64, 4096


class RolloutServer:
    def __init__(self, model: Any, tokenizer: Tokenizer, weights_dir: Path, name: str = "policy") -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.weights_dir = weights_dir.resolve()
        self.version = 0
        self.lock = asyncio.Lock()  # one generation or weight load at a time
        self._catch_up()

    def _catch_up(self) -> None:
        """A replica that starts (or restarts) mid-training serves the newest published version."""
        published = sorted(self.weights_dir.glob("v*/model.safetensors"))
        if published and published[-1].parent.name[1:].isdigit():
            self.model.load_state_dict(load_file(str(published[-1])), strict=True)
            self.version = int(published[-1].parent.name[1:])
            log.info("serving published policy version %d", self.version)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/load_weights", self.load_weights)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        return app

    async def completions(self, request: web.Request) -> web.Response:
        body = await _json(request)
        prompt, n = body.get("prompt"), body.get("n", 1)
        temperature, max_tokens = body.get("temperature", 1.0), body.get("max_tokens", 16)
        top_p = body.get("top_p", 1.0)
        if not isinstance(prompt, str) or not _int_in(n, 1, MAX_N) or not _int_in(max_tokens, 1, MAX_TOKENS):
            raise web.HTTPBadRequest(text=f"want prompt: str, n in 1..{MAX_N}, max_tokens in 1..{MAX_TOKENS}")
        if not isinstance(temperature, int | float) or not 0 < temperature <= 10:
            raise web.HTTPBadRequest(text="temperature must be in (0, 10]")
        if not isinstance(top_p, int | float) or not 0 < top_p <= 1:
            raise web.HTTPBadRequest(text="top_p must be in (0, 1]")
        async with self.lock:
            version = self.version
            sampled = await asyncio.to_thread(
                self._generate, prompt, n, float(temperature), float(top_p), max_tokens, body.get("seed")
            )
        choices = [
            {"index": i, "text": self.tokenizer.decode(ids), "token_ids": ids, "finish_reason": reason}
            for i, (ids, reason) in enumerate(sampled)
        ]
        return web.json_response({"object": "text_completion", "model": self.name, "choices": choices,
                                  "policy_version": version})  # fmt: skip

    @torch.no_grad()
    def _generate(
        self, prompt: str, n: int, temperature: float, top_p: float, max_tokens: int, seed: Any
    ) -> list[tuple[list[int], str]]:
        if isinstance(seed, int):
            torch.manual_seed(seed)
        ids = torch.tensor([[self.tokenizer.bos_id, *self.tokenizer.encode(prompt)]]).repeat(n, 1)
        out = self.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_tokens, pad_token_id=self.tokenizer.pad_id, eos_token_id=self.tokenizer.eos_id,
        )  # fmt: skip
        results = []
        for row in out[:, ids.shape[1] :].tolist():
            if self.tokenizer.eos_id in row:  # keep the EOS: it is a sampled token the policy is scored on
                results.append((row[: row.index(self.tokenizer.eos_id) + 1], "stop"))
            else:
                results.append((row, "length"))
        return results

    async def load_weights(self, request: web.Request) -> web.Response:
        body = await _json(request)
        version, path = body.get("version"), body.get("path")
        if not isinstance(version, int) or not _int_in(version, 0, 1 << 62) or not isinstance(path, str):
            raise web.HTTPBadRequest(text="want version: int >= 0 and path: str")
        directory = (self.weights_dir / path).resolve()
        if not directory.is_relative_to(self.weights_dir) or not (directory / "model.safetensors").is_file():
            raise web.HTTPBadRequest(text=f"no model.safetensors under --weights-dir at {path!r}")
        async with self.lock:
            try:
                state = await asyncio.to_thread(load_file, str(directory / "model.safetensors"))
                self.model.load_state_dict(state, strict=True)
            except (RuntimeError, ValueError) as error:
                raise web.HTTPBadRequest(text=f"weights do not fit the model: {error}") from None
            self.version = version
        log.info("loaded policy version %d from %s", self.version, directory)
        return web.json_response({"version": self.version})

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": self.version})

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.name, "object": "model"}]})


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m vlmop.workloads.rl.rollout_server", description=__doc__)
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model-preset", default="tiny")
    model.add_argument("--model-path", type=Path)
    p.add_argument("--weights-dir", type=Path, required=True, help="where the trainer publishes weights")
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a pod's server)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.manual_seed(args.seed)
    server = RolloutServer(models.build(None if args.model_path else args.model_preset, args.model_path),
                           tokenizer_for(args.model_path), args.weights_dir)  # fmt: skip
    web.run_app(server.app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
