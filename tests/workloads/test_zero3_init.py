"""ZeRO-3 without a whole model on any rank: under torchrun with 2 ranks (gloo, CPU), the trainer's
model build creates every parameter partitioned (deepspeed.zero.Init through transformers). A model of
about 1 GB of fp32 parameters grows each rank's peak memory by far less than the whole model, each
rank holds half of it, it is initialised (not left empty), and the tiny preset gets exactly the weights
of a plain build with the same seed (so ZeRO-3 trains the same model as ZeRO-2). Its steps on CPU keep
OpenMP spinning, not sleeping (the setup's all-gathers give gloo's threads no OpenMP team), and
reuse their memory rather than fault it in again.

glibc's malloc raises its mmap threshold as large blocks are freed, then keeps later freed blocks of
up to 32 MiB (a gathered layer) resident: the ranks run with the threshold fixed, so that their RSS
is the memory they hold, not what the allocator kept after the gathers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from vlmop.operator.localapi.loopback import free_port
from vlmop.workloads.pretrain import models

HELPER = Path(__file__).with_name("partitioned_build.py")


def test_zero3_builds_partitioned_and_initialised(tmp_path: Path) -> None:
    large = transformers.LlamaConfig(
        vocab_size=8000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=14,
        num_attention_heads=16, num_key_value_heads=16, tie_word_embeddings=False, initializer_range=0.02,
    )  # fmt: skip
    large.save_pretrained(tmp_path / "large")  # a config alone: ~252M parameters, 1.0 GB in fp32
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port",
               str(free_port()), str(HELPER), str(tmp_path / "large"), str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    whole = ranks[0]["whole"]
    whole_mib = whole * 4 / 2**20
    assert 240e6 < whole < 260e6
    for rank in ranks:
        assert rank["held"] == pytest.approx(whole / 2, rel=0.01)  # half each
        # Its half, plus one module gathered at a time while it is built and initialised (the
        # largest, an embedding, is 31 MiB): well under the whole model's 960 MiB.
        assert rank["grown_mib"] < 0.65 * whole_mib, (rank["grown_mib"], whole_mib)
        assert rank["std"] == pytest.approx(0.02, rel=0.05)  # initialised as the config says
    torch.manual_seed(0)
    plain = {n: p.detach().double().sum().item() for n, p in models.build("tiny", None).named_parameters()}
    assert ranks[0]["tiny"] == ranks[1]["tiny"] == pytest.approx(plain, rel=1e-9)


def test_cpu_steps_neither_sleep_in_openmp_nor_refault_their_memory(tmp_path: Path) -> None:
    """Under gloo, ZeRO-3's setup all-gathers every parameter on gloo's own threads; had they run a
    parallel op then, each would own an OpenMP team, libgomp would manage more threads than there are
    cores and stop spinning at its barriers, and every parallel op of a step would wait on a futex
    wake-up (2 cores: ~600 sleeps a step, 1.3x slower). The trainer sets up on one thread. And glibc
    would hand each step's large tensors back to the kernel and fault them in again (~900 page faults
    a step here): the trainer keeps freed memory, as CUDA's allocator does."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=1", "--master-port",
               str(free_port()), str(Path(__file__).with_name("zero3_steps.py")), str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["switches_per_step"] < 150, figures
    assert figures["faults_per_step"] < 300, figures
