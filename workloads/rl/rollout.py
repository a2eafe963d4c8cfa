"""The rollout client: G samples per prompt from the rollout servers (OpenAI-compatible /v1/completions),
all prompts in flight together, each sample with the policy version that produced it; and weight
publication: the trainer writes a version's weights (safetensors) under the shared weights folder and
has every server load it.

Two engines. `vlmop` (rollout_server.py) tokenises the prompt, answers with token ids and its
`policy_version`, and loads weights on POST /v1/load_weights. `vllm` (`vllm serve --skip-tokenizer-init`
with VLLM_SERVER_DEV_MODE=1) gets the prompt as token ids and answers token ids (`return_token_ids`);
a version is published by the sequence vLLM's RL boundary needs (pause, reload_weights from the folder,
reset the prefix and encoder caches, set the weight version, resume), and since vLLM's replies carry no
version, each server's /weight_info is read before and after a batch: every reply in between was
sampled with that version (the trainer is the only publisher)."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from vlmop.workloads.common.checkpoint import cpu_state_dict

Engine = Literal["vlmop", "vllm"]
SERVED_NAME = "policy"  # the rollout pool's --served-model-name


@dataclass(frozen=True)
class Completion:
    token_ids: list[int]
    version: int  # the policy version the server sampled with


@dataclass(frozen=True)
class Request:
    """One prompt's G samples: its text (vlmop's server tokenises) and its token ids (vLLM's input)."""

    prompt: str
    prompt_ids: list[int]
    n: int
    temperature: float
    max_tokens: int
    top_p: float = 1.0
    stop_id: int | None = None  # the EOS: vLLM without a tokenizer knows only the config's


def _post(url: str, body: dict[str, Any], timeout: float) -> Any:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"rollout server {url!r} is not http(s)")
    request = urllib.request.Request(  # noqa: S310 (checked above)
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
        raw = reply.read()
    return json.loads(raw) if raw else {}  # vLLM answers some control routes with an empty body


def endpoints(urls: Sequence[str]) -> list[str]:
    """Every server behind the URLs: a headless Service's name resolves to each ready pod's address,
    so a URL becomes one per replica (a name that does not resolve stays as it is)."""
    out: list[str] = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = socket.getaddrinfo(parts.hostname or "", port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            out.append(url)
            continue
        hosts = sorted({str(info[4][0]) for info in found})
        for host in hosts:
            netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            out.append(urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")))
    return out


def wait_ready(urls: Sequence[str], timeout: float = 1800.0, poll: float = 2.0) -> list[str]:
    """The servers behind the URLs once every one of them answers /health (at least one): the
    trainer's gang and the rollout pool start together, and a model takes minutes to load, during
    which a headless Service's name resolves to nothing."""
    deadline = time.monotonic() + timeout
    while True:
        servers = endpoints(urls)
        if all(_healthy(s) for s in servers):
            return servers
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the rollout servers did not answer /health within {timeout:.0f} s: {servers}"
            )
        time.sleep(poll)


def _healthy(server: str) -> bool:
    url = server.rstrip("/") + "/health"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"rollout server {server!r} is not http(s)")
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 (checked above)
            return bool(reply.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def sample(
    server: str, request: Request, engine: Engine = "vlmop", timeout: float = 600.0
) -> list[Completion]:
    r = request
    body: dict[str, Any] = {
        "n": r.n,
        "temperature": r.temperature,
        "max_tokens": r.max_tokens,
        "top_p": r.top_p,
    }
    if engine == "vllm":
        body |= {"model": SERVED_NAME, "prompt": r.prompt_ids, "return_token_ids": True}
        body |= {"stop_token_ids": [r.stop_id]} if r.stop_id is not None else {}
    else:
        body["prompt"] = r.prompt
    reply = _post(server.rstrip("/") + "/v1/completions", body, timeout)
    version = int(reply.get("policy_version", -1))  # vLLM: set by sample_all from /weight_info
    return [Completion(list(c.get("token_ids") or []), version) for c in reply["choices"]]


def sample_all(
    servers: Sequence[str], requests: Sequence[Request], engine: Engine = "vlmop", version: int = -1
) -> list[list[Completion]]:
    """Every request in flight at once, spread over the servers; in request order. On vLLM, each
    server must serve `version` before and after (RuntimeError otherwise)."""
    if engine == "vllm":
        check_versions(servers, version)
    with ThreadPoolExecutor(max_workers=max(1, len(requests))) as pool:
        futures = [pool.submit(sample, servers[i % len(servers)], r, engine) for i, r in enumerate(requests)]
        groups = [f.result() for f in futures]
    if engine == "vllm":
        check_versions(servers, version)
        groups = [[Completion(c.token_ids, version) for c in group] for group in groups]
    return groups


def served_version(server: str) -> int | None:
    """The weight version a vLLM server reports (None before the trainer set one)."""
    url = server.rstrip("/") + "/weight_info"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"rollout server {server!r} is not http(s)")
    with urllib.request.urlopen(url, timeout=30) as reply:  # noqa: S310 (checked above)
        found = json.loads(reply.read()).get("weight_version")
    return int(found) if found is not None and str(found).isdigit() else None


def check_versions(servers: Sequence[str], version: int) -> None:
    stale = {s: v for s in servers if (v := served_version(s)) != version}
    if stale:
        raise RuntimeError(f"rollout servers serve other policy versions than {version}: {stale}")


def stale(servers: Sequence[str], version: int, engine: Engine) -> list[str]:
    """The vLLM servers not serving `version` (a replica that restarted serves the starting model)."""
    return [s for s in servers if served_version(s) != version] if engine == "vllm" else []


def version_dir(version: int) -> str:
    return f"v{version:08d}"


def publish(
    model: torch.nn.Module,
    weights_dir: Path,
    version: int,
    servers: list[str],
    keep: int = 2,
    engine: Engine = "vlmop",
) -> None:
    """Write `v<version>/model.safetensors` atomically, have every server load it, prune old ones."""
    name = version_dir(version)
    staging = weights_dir / f".{name}.tmp"
    staging.mkdir(parents=True, exist_ok=True)
    save_file(cpu_state_dict(model), str(staging / "model.safetensors"))
    shutil.rmtree(weights_dir / name, ignore_errors=True)  # a restarted trainer publishes its step again
    staging.replace(weights_dir / name)
    for server in servers:
        load(server, weights_dir / name, version, engine)
    for old in sorted(weights_dir.glob("v*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load(server: str, directory: Path, version: int, engine: Engine) -> None:
    """Have one server load the weights in `directory` (its path on the shared claim) as `version`."""
    base = server.rstrip("/")
    if engine == "vlmop":
        _post(base + "/v1/load_weights", {"version": version, "path": directory.name}, 300.0)
        return
    # vLLM: in-place reload is safe only between pause and resume, and only with both caches reset
    # after it (a cached prefix holds the old weights' KV; an image seen before would hit a stale
    # encoder cache and kill the engine). The version goes last: it says the reload finished.
    _post(base + "/pause?mode=wait", {}, 300.0)
    try:
        rpc = {"method": "reload_weights", "kwargs": {"weights_path": str(directory)}}
        _post(base + "/collective_rpc", rpc, 300.0)
        _post(base + "/reset_prefix_cache", {}, 60.0)
        _post(base + "/reset_encoder_cache", {}, 60.0)
        _post(base + "/update_weight_version", {"new_version": str(version)}, 60.0)
    finally:
        _post(base + "/resume", {}, 60.0)
