"""The rollout client: G samples per prompt from a rollout server (OpenAI-compatible /v1/completions,
as vLLM serves), each with the policy version that produced it; and weight publication: the trainer
writes a version's weights (safetensors) under the shared weights folder and tells every server to
load it."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from vlmop.workloads.common.checkpoint import cpu_state_dict


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: list[int]
    version: int  # the policy version the server sampled with


def _post(url: str, body: dict[str, Any], timeout: float) -> Any:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"rollout server {url!r} is not http(s)")
    request = urllib.request.Request(  # noqa: S310 (checked above)
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
        return json.loads(reply.read())


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


def sample(
    server: str,
    prompt: str,
    n: int,
    temperature: float,
    max_tokens: int,
    top_p: float = 1.0,
    timeout: float = 600.0,
) -> list[Completion]:
    body = {"prompt": prompt, "n": n, "temperature": temperature, "max_tokens": max_tokens, "top_p": top_p}
    reply = _post(server.rstrip("/") + "/v1/completions", body, timeout)
    version = int(reply.get("policy_version", -1))
    return [Completion(c["text"], list(c.get("token_ids") or []), version) for c in reply["choices"]]


def publish(
    model: torch.nn.Module, weights_dir: Path, version: int, servers: list[str], keep: int = 2
) -> None:
    """Write `v<version>/model.safetensors` atomically, have every server load it, prune old ones."""
    name = f"v{version:08d}"
    staging = weights_dir / f".{name}.tmp"
    staging.mkdir(parents=True, exist_ok=True)
    save_file(cpu_state_dict(model), str(staging / "model.safetensors"))
    staging.replace(weights_dir / name)
    for server in servers:
        _post(server.rstrip("/") + "/v1/load_weights", {"version": version, "path": name}, 300.0)
    for old in sorted(weights_dir.glob("v*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
