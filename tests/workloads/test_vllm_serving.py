"""The DvD language pool on vLLM's real server (CPU build): the example DvDDeployment's three pools,
their command lines as the operator writes them, run here on a tiny random InternVL checkpoint.
gateway -> vision server -> vLLM must answer what the coupled transformers path answers (greedy), for
images of different ViR token counts, alone, together in one request and batched across requests; a
vision pool of another width is refused at the gateway; and every vLLM command line the operator
writes parses with vLLM's own parser."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import torch
import yaml
from PIL import Image

from vlmop.operator.api import CascadeRLJobSpec, DvDDeploymentSpec
from vlmop.operator.builders import cascaderljob, dvddeployment
from vlmop.operator.builders import pool as pools
from vlmop.operator.localapi.loopback import free_port, wait_ready
from vlmop.workloads.rl.rewards import verifiers
from vlmop.workloads.serving.model import save_tiny

ROOT = Path(__file__).resolve().parents[2]


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = manifest["spec"]["template"]["spec"]["containers"][0]
    return found


def owner(name: str) -> dict[str, Any]:
    return {"apiVersion": "vlmop.io/v1alpha1", "kind": "DvDDeployment",
            "metadata": {"name": name, "namespace": "ns", "uid": "u"}}  # fmt: skip


def png(seed: int, detail: bool, width: int = 64, height: int = 32) -> str:
    """A data URI: detailed noise (ViR keeps 1/4 of each tile's tokens) or a flat colour (1/16)."""
    torch.manual_seed(seed)
    pixels = (
        (torch.rand(height, width, 3) * 255).byte() if detail else torch.full((height, width, 3), 90 + seed)
    )
    out = io.BytesIO()
    Image.fromarray(pixels.byte().numpy()).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def chat(*images: str, text: str = "What is in the picture?") -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "Look: "}]
    for url in images:
        parts += [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": " and "}]
    parts.append({"type": "text", "text": text})
    return {"messages": [{"role": "user", "content": parts}], "max_tokens": 12, "temperature": 0}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, vllm: Any) -> Iterator[dict[str, str]]:
    """The example's pools from the builders, started here: vision server, vLLM, gateway; and the
    coupled gateway (`--coupled`: the same checkpoint on transformers in one process)."""
    work = tmp_path_factory.mktemp("dvd-vllm")
    model = save_tiny(work / "model")
    doc = yaml.safe_load((ROOT / "examples" / "dvddeployment.yaml").read_text())
    doc["spec"]["model"] = str(model)
    doc["spec"]["language"].update(port=free_port(), dtype="float32", engine="vllm")
    doc["spec"]["vision"]["port"] = free_port()
    doc["spec"]["gateway"]["port"] = free_port()
    spec = DvDDeploymentSpec.model_validate(doc["spec"])
    me = owner("demo")
    made = {name: container(pools.deployment(p)) for name, p in dvddeployment.all_pools(me, spec).items()}
    local = {pools.url(p): f"http://127.0.0.1:{p.port}" for p in dvddeployment.all_pools(me, spec).values()}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TRITON_INTERPRET", None)
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, argv: list[str], health: str) -> None:
        log = work / f"{name}.log"
        started.append(subprocess.Popen([sys.executable, *argv], env=env, stdout=log.open("wb"),
                                        stderr=subprocess.STDOUT))  # fmt: skip
        wait_ready(health, started[-1], log, timeout=120)

    try:
        with vllm.server(made["language"], work / "vllm.log"):
            vision = made["vision"]
            assert vision["command"][:2] == ["python", "-m"]
            start(
                "vision",
                [*vision["command"][1:], *vision["args"]],
                f"http://127.0.0.1:{spec.vision.port}/health",
            )
            gateway = made["gateway"]
            args = [local.get(a, a) for a in gateway["args"]]  # the Services' names -> loopback
            start("gateway", [*gateway["command"][1:], *args], f"http://127.0.0.1:{spec.gateway.port}/health")
            coupled = free_port()
            start("coupled", ["-m", "vlmop.workloads.serving.gateway", "--coupled", str(model), "--port",
                              str(coupled)], f"http://127.0.0.1:{coupled}/health")  # fmt: skip
            narrow = work / "narrow.json"  # a language model of another width
            config = json.loads((model / "config.json").read_text())
            config["text_config"]["hidden_size"] = 64
            narrow.write_text(json.dumps(config))
            wrong = free_port()
            flags = {"--model-config": str(narrow), "--port": str(wrong)}
            args = [flags.get(before, a) for before, a in zip(["", *args[:-1]], args, strict=True)]
            start("wrong", [*gateway["command"][1:], *args], f"http://127.0.0.1:{wrong}/health")
            yield {"dvd": f"http://127.0.0.1:{spec.gateway.port}", "coupled": f"http://127.0.0.1:{coupled}",
                   "wrong": f"http://127.0.0.1:{wrong}",
                   "vllm": f"http://127.0.0.1:{spec.language.port}"}  # fmt: skip
    finally:
        for process in started:
            process.terminate()
            process.wait(30)


async def answer(url: str, body: dict[str, Any]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/v1/chat/completions", json=body) as r:
        text = await r.text()
        return r.status, json.loads(text)["choices"][0]["message"]["content"] if r.status == 200 else text


FLAT, SHARP, OTHER = png(1, False), png(2, True), png(3, True, 96, 32)


@pytest.mark.parametrize(
    "images", [(FLAT,), (SHARP,), (FLAT, SHARP), (OTHER, FLAT, SHARP)], ids=["flat", "sharp", "two", "three"]
)
async def test_dvd_on_vllm_answers_as_the_coupled_transformers_path(
    stack: dict[str, str], images: tuple[str, ...]
) -> None:
    body = chat(*images)
    (status, dvd), (_, coupled) = await asyncio.gather(
        answer(stack["dvd"], body), answer(stack["coupled"], body)
    )
    assert status == 200, dvd
    assert dvd == coupled and len(dvd) > 0


async def test_requests_with_different_token_counts_batch_together(stack: dict[str, str]) -> None:
    """ViR gives each image its own token count; vLLM batches the concurrent requests' images into one
    forward pass (vLLM 0.32 kills its engine there without vlmop's plugin)."""
    bodies = [chat(FLAT), chat(SHARP), chat(OTHER), chat(FLAT, OTHER)] * 2
    dvd = await asyncio.gather(*(answer(stack["dvd"], b) for b in bodies))
    coupled = [await answer(stack["coupled"], b) for b in bodies]
    assert dvd == coupled
    assert all(status == 200 for status, _ in dvd)


async def test_features_of_another_width_are_refused_naming_both(stack: dict[str, str]) -> None:
    status, text = await answer(stack["wrong"], chat(SHARP))
    assert status == 502 and "128 wide" in text and "64 wide" in text
    status, _ = await answer(stack["dvd"], chat(SHARP))  # and the pools keep serving
    assert status == 200


def test_the_compass_verifier_request_is_one_vllm_serves(stack: dict[str, str]) -> None:
    """CompassVerifier's chat request as vLLM takes it: the (random) model's judgement comes back and is
    read; an unknown model name is vLLM's 404, a VerifierError."""
    outcome: float | str
    try:
        outcome = verifiers.compass_verifier(stack["vllm"], "What is 2+2?", "4", "It is 4.", "vlm", 120)
    except verifiers.VerifierError as error:  # read as a chat completion, but with no verdict in it
        outcome = str(error)
    assert outcome in (0.0, 1.0) or "verdict" in str(outcome), outcome
    with pytest.raises(verifiers.VerifierError, match="HTTP 404"):
        verifiers.compass_verifier(stack["vllm"], "q", "4", "4", "no-such-model", 120)


def test_every_vllm_command_line_the_operator_writes_parses(examples: dict[str, Any], vllm: Any) -> None:
    """Language pools (each dtype, with and without max length, tensor parallel, extra args) and
    rollout pools, through vLLM's parser; the old swallowed-port line as the control that it can fail."""
    lines = []
    for dtype, length, tp, extra in [("auto", None, 1, []), ("bfloat16", 4096, 2, ["--max-num-seqs", "64"])]:
        doc = copy.deepcopy(examples["dvddeployment"])
        doc["spec"]["language"].update(dtype=dtype, maxModelLen=length, tensorParallel=tp, gpusPerReplica=tp,
                                       args=extra, engine="vllm")  # fmt: skip
        spec = DvDDeploymentSpec.model_validate(doc["spec"])
        lines.append(vllm.argv(container(pools.deployment(dvddeployment.language_pool(owner("x"), spec)))))
    doc = copy.deepcopy(examples["cascaderljob"])
    for stage in doc["spec"]["stages"]:
        if stage["kind"] == "gspo":
            stage["rollout"].update(engine="vllm", maxModelLen=2048)
    spec = CascadeRLJobSpec.model_validate(doc["spec"])
    gspo = next(i for i, s in enumerate(spec.stages) if s.kind == "gspo")
    lines.append(vllm.argv(container(pools.deployment(cascaderljob.rollout_pool(owner("x"), spec, gspo)))))
    for argv in lines:
        done = vllm.parses(argv)
        assert done.returncode == 0, (argv, done.stderr[-2000:])
    broken = vllm.parses(["/models/m", "--host", "127.0.0.1", "--port", "--tensor-parallel-size", "1"])
    assert broken.returncode != 0 and "--port: expected one argument" in broken.stderr
