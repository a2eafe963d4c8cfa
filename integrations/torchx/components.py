"""torchx components for vlmop's own trainers (`torchx run -s local_cwd vlmop.pretrain --preset tiny`
trains the tiny preset on this machine; `-s vlmop` runs the same AppDef as a PretrainJob).

They are torchx's `dist.torchrun` around `python -m vlmop.workloads.<trainer>`, so every torchx
scheduler that runs `dist.torchrun` runs them: `vlmop.pretrain`, and Cascade RL's two stages,
`vlmop.mpo` and `vlmop.gspo`."""

# No `from __future__ import annotations`: torchx parses the command line by the real annotations.
from collections.abc import Mapping

from torchx.components.dist import torchrun
from torchx.specs import AppDef

TRAINER_IMAGE = "ghcr.io/vlmop/trainer:0.1.0"


def pretrain(
    *extra: str,
    preset: str = "tiny",
    model_path: str | None = None,
    data: str = "examples/claims/pretrain-data/tokens",
    seq_length: int = 256,
    total_steps: int = 20,
    zero_stage: int = 2,
    precision: str = "bf16",
    micro_batch_size: int = 2,
    checkpoint_dir: str = "checkpoints",
    checkpoint_interval: int = 10,
    metrics_port: int = 9400,
    image: str = TRAINER_IMAGE,
    j: str = "1x2",
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,  # torchx's resource argument name
    max_retries: int = 0,
) -> AppDef:
    """Pretrain a (vision-)language model with the vlmop DeepSpeed trainer.

    Args:
        extra: further trainer flags (python -m vlmop.workloads.pretrain --help)
        preset: named model built from scratch (tiny, tiny-vl, qwen2.5-0.5b)
        model_path: Hugging Face checkpoint directory instead of a preset
        data: text/.npy/.jsonl data file or directory
        seq_length: tokens per sequence
        total_steps: optimizer steps
        zero_stage: DeepSpeed ZeRO stage 0-3
        precision: bf16, fp16 or fp32
        micro_batch_size: sequences per rank per forward pass
        checkpoint_dir: where checkpoints go (resumed from when present)
        checkpoint_interval: save every this many steps
        metrics_port: rank 0's /metrics and /progress (what the operator reads); 0 turns it off
        image: container image (schedulers that run containers)
        j: {nnodes}x{nproc_per_node}
        cpu: CPUs per node
        gpu: GPUs per node
        memMB: memory per node in MB
        max_retries: whole-gang restarts on failure
    """
    flags = {
        "data": data,
        "seq-length": seq_length,
        "total-steps": total_steps,
        "zero-stage": zero_stage,
        "precision": precision,
        "micro-batch-size": micro_batch_size,
        "checkpoint-dir": checkpoint_dir,
        "checkpoint-interval": checkpoint_interval,
        "metrics-port": metrics_port,
    }
    return _trainer(
        "vlmop.workloads.pretrain", preset, model_path, flags, extra, image, j, cpu, gpu, memMB, max_retries
    )


def mpo(
    *extra: str,
    data: str,
    preset: str = "tiny",
    model_path: str | None = None,
    seq_length: int = 512,
    total_steps: int = 100,
    beta: float = 0.1,
    lr: float = 2e-7,
    zero_stage: int = 2,
    precision: str = "bf16",
    micro_batch_size: int = 1,
    checkpoint_dir: str = "checkpoints",
    checkpoint_interval: int = 50,
    metrics_port: int = 9400,
    image: str = TRAINER_IMAGE,
    j: str = "1x2",
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,  # torchx's resource argument name
    max_retries: int = 0,
) -> AppDef:
    """Cascade RL stage 1: MPO on preference pairs with the vlmop trainer.

    Args:
        extra: further trainer flags (python -m vlmop.workloads.rl.mpo --help)
        data: JSONL file or directory of {"prompt", "chosen", "rejected"} records
        preset: named model built from scratch (tiny, tiny-vl, qwen2.5-0.5b)
        model_path: Hugging Face checkpoint directory instead of a preset (the usual start)
        seq_length: tokens per prompt + answer
        total_steps: optimizer steps
        beta: MPO's β
        lr: peak learning rate (InternVL3.5 used 2e-7 at 8B)
        zero_stage: DeepSpeed ZeRO stage 0-3
        precision: bf16, fp16 or fp32
        micro_batch_size: pairs per rank per forward pass
        checkpoint_dir: where checkpoints go (resumed from when present)
        checkpoint_interval: save every this many steps
        metrics_port: rank 0's /metrics and /progress; 0 turns it off
        image: container image (schedulers that run containers)
        j: {nnodes}x{nproc_per_node}
        cpu: CPUs per node
        gpu: GPUs per node
        memMB: memory per node in MB
        max_retries: whole-gang restarts on failure
    """
    flags = {
        "data": data,
        "seq-length": seq_length,
        "total-steps": total_steps,
        "beta": beta,
        "lr": lr,
        "zero-stage": zero_stage,
        "precision": precision,
        "micro-batch-size": micro_batch_size,
        "checkpoint-dir": checkpoint_dir,
        "checkpoint-interval": checkpoint_interval,
        "metrics-port": metrics_port,
    }
    return _trainer(
        "vlmop.workloads.rl.mpo", preset, model_path, flags, extra, image, j, cpu, gpu, memMB, max_retries
    )


def gspo(
    *extra: str,
    rollout_url: str,
    weights_dir: str,
    rollout_engine: str = "vllm",
    task: str = "arithmetic-24",
    preset: str = "tiny",
    model_path: str | None = None,
    rewards: str | None = None,
    group_size: int = 16,
    max_tokens: int = 512,
    temperature: float = 1.0,
    loss_mode: str = "gspo",
    total_steps: int = 100,
    lr: float = 1e-6,
    zero_stage: int = 2,
    precision: str = "bf16",
    prompts_per_rank: int = 4,
    checkpoint_dir: str = "checkpoints",
    checkpoint_interval: int = 50,
    metrics_port: int = 9400,
    image: str = TRAINER_IMAGE,
    j: str = "1x2",
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,  # torchx's resource argument name
    max_retries: int = 0,
) -> AppDef:
    """Cascade RL stage 2: GSPO with rollouts from OpenAI-compatible servers and a Mixture-of-Rewards.

    Args:
        extra: further trainer flags (python -m vlmop.workloads.rl.gspo --help)
        rollout_url: rollout server URL(s), comma-separated (ranks spread over them)
        weights_dir: folder shared with the rollout servers, where each update's weights are published
        rollout_engine: vllm (vLLM servers: token ids, pause/reload/reset/resume) or vlmop (the stand-in)
        task: generated task(s), comma-separated (arithmetic-24, sorting, knights-knaves, letters)
        preset: named model built from scratch (tiny, tiny-vl, qwen2.5-0.5b)
        model_path: Hugging Face checkpoint directory, usually the MPO stage's export
        rewards: JSON file {verifiers, routes}; default: each task scored by its environment
        group_size: samples per prompt (G)
        max_tokens: longest sampled answer
        temperature: sampling temperature
        loss_mode: gspo or grpo
        total_steps: rollout + update steps
        lr: learning rate (InternVL3.5 used 1e-6)
        zero_stage: DeepSpeed ZeRO stage 0-2 (rank 0 publishes whole weights)
        precision: bf16, fp16 or fp32
        prompts_per_rank: prompts each rank samples per step
        checkpoint_dir: where checkpoints go (resumed from when present)
        checkpoint_interval: save every this many steps
        metrics_port: rank 0's /metrics and /progress; 0 turns it off
        image: container image (schedulers that run containers)
        j: {nnodes}x{nproc_per_node}
        cpu: CPUs per node
        gpu: GPUs per node
        memMB: memory per node in MB
        max_retries: whole-gang restarts on failure
    """
    servers = [arg for url in rollout_url.split(",") if url for arg in ("--rollout-url", url)]
    tasks = [arg for name in task.split(",") if name for arg in ("--task", name)]
    flags = {
        "rollout-engine": rollout_engine,
        "weights-dir": weights_dir,
        "rewards": rewards,
        "group-size": group_size,
        "max-tokens": max_tokens,
        "temperature": temperature,
        "loss-mode": loss_mode,
        "total-steps": total_steps,
        "lr": lr,
        "zero-stage": zero_stage,
        "precision": precision,
        "micro-batch-size": prompts_per_rank,
        "checkpoint-dir": checkpoint_dir,
        "checkpoint-interval": checkpoint_interval,
        "metrics-port": metrics_port,
    }
    return _trainer(
        "vlmop.workloads.rl.gspo",
        preset,
        model_path,
        flags,
        (*servers, *tasks, *extra),
        image,
        j,
        cpu,
        gpu,
        memMB,
        max_retries,
    )


def _trainer(
    module: str,
    preset: str,
    model_path: str | None,
    flags: Mapping[str, object],
    extra: tuple[str, ...],
    image: str,
    j: str,
    cpu: int,
    gpu: int,
    memMB: int,  # torchx's resource argument name
    max_retries: int,
) -> AppDef:
    """dist.torchrun around `python -m <module>` with the model, the flags that are set, and extra."""
    model = ["--model-path", model_path] if model_path else ["--model-preset", preset]
    args = [*model, *(arg for k, v in flags.items() if v is not None for arg in (f"--{k}", str(v))), *extra]
    name = "vlmop-" + module.rsplit(".", 1)[-1]
    return torchrun(
        *args, m=module, image=image, name=name, j=j, cpu=cpu, gpu=gpu, memMB=memMB, max_retries=max_retries
    )
