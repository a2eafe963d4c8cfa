"""The POLAR client against vLLM's real server (CPU build) serving a reward model the way POLAR is
served (`vllm serve MODEL --runner pooling`): a tiny random Qwen2ForRewardModel (the architecture
vLLM runs for POLAR-style scalar heads) over the byte tokenizer. The reward the client reads from
`/pooling` is the one transformers computes on POLAR's input text, last token."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Model

from vlmop.operator.localapi import engines
from vlmop.operator.localapi.loopback import free_port, wait_ready
from vlmop.workloads.pretrain.data import ByteTokenizer
from vlmop.workloads.rl.rewards import verifiers
from vlmop.workloads.serving.model import tiny_config


def save_reward_model(directory: Path) -> Path:
    """Qwen2 layers plus vLLM's Qwen2 reward head (score: Linear(h, h), ReLU, Linear(h, 1))."""
    torch.manual_seed(0)
    text = tiny_config().text_config
    names = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "vocab_size")  # fmt: skip
    config = Qwen2Config(**{k: getattr(text, k) for k in names}, tie_word_embeddings=False)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    weights = load_file(directory / "model.safetensors")
    h = config.hidden_size
    weights |= {"score.0.weight": torch.randn(h, h) / h**0.5, "score.0.bias": torch.randn(h) / h,
                "score.2.weight": torch.randn(1, h) / h**0.5, "score.2.bias": torch.zeros(1)}  # fmt: skip
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
    saved = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**saved, "architectures": ["Qwen2ForRewardModel"]}))
    ByteTokenizer.save(directory)
    return directory


def reward_by_transformers(directory: Path, text: str) -> float:
    weights = load_file(directory / "model.safetensors")
    ids = torch.tensor([ByteTokenizer().encode(text)])
    with torch.no_grad():
        hidden = Qwen2Model.from_pretrained(directory).eval()(ids).last_hidden_state[0, -1]
        inner = torch.relu(weights["score.0.weight"] @ hidden + weights["score.0.bias"])
        return float(weights["score.2.weight"] @ inner + weights["score.2.bias"])


@pytest.fixture(scope="module")
def polar_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if not engines.installed():
        pytest.fail(f"vLLM's CPU venv is missing ({engines.vllm_python()}): run .ci/vllm-venv (CI does)")
    work = tmp_path_factory.mktemp("polar-vllm")
    model, port, log = save_reward_model(work / "model"), free_port(), work / "vllm.log"
    argv = [str(model), "--runner", "pooling", "--host", "127.0.0.1", "--port", str(port),
            "--dtype", "float32", "--max-model-len", "1024"]  # fmt: skip
    process = subprocess.Popen([*engines.serve(), *argv], env={**os.environ, **engines.CPU_ENV}, cwd="/",
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", process, log, timeout=400)
        yield f"http://127.0.0.1:{port}", model
    finally:
        process.terminate()
        process.wait(30)


def test_polar_rewards_from_vllm_pooling_are_the_models_last_token_score(
    polar_server: tuple[str, Path],
) -> None:
    url, model = polar_server
    samples = [("What is 2+2?", "4", "It is 4."), ("Name a prime.", "7", "<think>hm</think>9")]
    expected = [reward_by_transformers(model, verifiers.polar_text(*s)) for s in samples]
    assert expected[0] != pytest.approx(expected[1])  # the two inputs are told apart
    # A pool's bare Service URL means /pooling; the batch call names it.
    assert verifiers.polar(url, *samples[0]) == pytest.approx(expected[0], rel=1e-3, abs=1e-4)
    assert verifiers.polar_batch(f"{url}/pooling", samples) == pytest.approx(expected, rel=1e-3, abs=1e-4)
    with pytest.raises(verifiers.VerifierError, match="HTTP 4"):  # vLLM refuses what is not its protocol
        verifiers.post_json(f"{url}/pooling", {"inputs": "x"}, 30)
