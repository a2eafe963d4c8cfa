"""The rollout server in process (aiohttp's test client, a tiny random Llama): completions with token
ids and the policy version, versioned weight loads from the weights folder only, and 400 for every
malformed request while it keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer
from safetensors.torch import save_file

from vlmop.workloads.common.checkpoint import cpu_state_dict
from vlmop.workloads.pretrain import models
from vlmop.workloads.pretrain.data import ByteTokenizer
from vlmop.workloads.rl.rollout_server import RolloutServer


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], RolloutServer]]:
    torch.manual_seed(0)
    server = RolloutServer(models.build("tiny", None), ByteTokenizer(), tmp_path)
    async with TestClient(TestServer(server.app())) as client:
        yield client, server


async def test_completions_carry_token_ids_and_the_policy_version(client: Any) -> None:
    http, _ = client
    reply = await http.post("/v1/completions", json={"prompt": "hi", "n": 3, "max_tokens": 5, "seed": 1})
    assert reply.status == 200
    body = await reply.json()
    assert body["policy_version"] == 0 and len(body["choices"]) == 3
    tokenizer = ByteTokenizer()
    for choice in body["choices"]:
        ids = choice["token_ids"]
        if choice["finish_reason"] == "length":  # ran to max_tokens without an end
            assert len(ids) == 5 and tokenizer.eos_id not in ids
        else:  # stopped at the end token, which is kept: the policy is scored on it
            assert choice["finish_reason"] == "stop" and ids[-1] == tokenizer.eos_id and len(ids) <= 5
        assert choice["text"] == tokenizer.decode(ids)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        [1, 2],
        {"n": 2},
        {"prompt": 5},
        {"prompt": "x", "n": 0},
        {"prompt": "x", "n": 1000},
        {"prompt": "x", "n": True},
        {"prompt": "x", "max_tokens": 10**6},
        {"prompt": "x", "temperature": 0},
        {"prompt": "x", "temperature": "hot"},
    ],
)
async def test_malformed_requests_get_400_and_the_server_keeps_serving(client: Any, body: Any) -> None:
    http, _ = client
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    assert (await http.post("/v1/completions", **kwargs)).status == 400
    assert (await http.get("/health")).status == 200


async def test_weights_load_by_version_from_the_weights_folder_only(client: Any, tmp_path: Path) -> None:
    http, server = client
    state = {k: torch.full_like(v, 0.01) for k, v in server.model.state_dict().items()}
    (tmp_path / "v00000003").mkdir()
    save_file(state, str(tmp_path / "v00000003" / "model.safetensors"))
    reply = await http.post("/v1/load_weights", json={"version": 3, "path": "v00000003"})
    assert reply.status == 200 and (await reply.json())["version"] == 3
    assert all(bool((p == 0.01).all()) for p in server.model.parameters())
    body = await (await http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})).json()
    assert body["policy_version"] == 3

    (tmp_path / "bad").mkdir()
    save_file({"other.weight": torch.zeros(2)}, str(tmp_path / "bad" / "model.safetensors"))
    refused = [
        {"version": 4, "path": "../etc"},  # outside the weights folder
        {"version": 4, "path": "missing"},
        {"version": -1, "path": "v00000003"},
        {"version": 4, "path": "bad"},  # weights of another model
    ]
    for bad in refused:
        assert (await http.post("/v1/load_weights", json=bad)).status == 400
    assert (await (await http.get("/health")).json())["version"] == 3


def test_a_replica_that_starts_mid_training_serves_the_newest_version(tmp_path: Path) -> None:
    torch.manual_seed(1)
    trained = models.build("tiny", None)
    for version in (3, 4):  # what the trainer published before this replica started
        (tmp_path / f"v{version:08d}").mkdir()
        save_file(cpu_state_dict(trained), str(tmp_path / f"v{version:08d}" / "model.safetensors"))
    torch.manual_seed(2)
    server = RolloutServer(models.build("tiny", None), ByteTokenizer(), tmp_path)
    assert server.version == 4
    assert all(
        torch.equal(a, b) for a, b in zip(server.model.parameters(), trained.parameters(), strict=True)
    )
