"""Training pieces shared by PretrainJob and CascadeRLJob: model, data, DeepSpeed, gang topology and
checkpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from vlmop.operator.api.common import ApiModel, Placement, cel, sub, subdomain

# The presets the trainers can build (vlmop.workloads.pretrain.models); a test keeps the two in step.
ModelPreset = Literal[
    "tiny", "tiny-vl", "qwen2.5-0.5b", "qwen3-1.7b", "tiny-moe", "qwen3-30b-a3b", "qwen3-235b-a22b"
]
# The Mixture-of-Experts presets and their experts per layer (a test keeps them in step with the models).
MOE_PRESET_EXPERTS = {"tiny-moe": 4, "qwen3-30b-a3b": 128, "qwen3-235b-a22b": 128}


class ModelSource(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.preset) != has(self.path)",
                    "set exactly one of model.preset and model.path",
                )
            ]
        }
    )

    preset: ModelPreset | None = Field(
        None,
        description="Named model configuration built from scratch (random init): tiny (a 2-layer "
        "Llama), tiny-vl (LLaVA-style ViT + projector + tiny LM), qwen2.5-0.5b and qwen3-1.7b (those "
        "models' shapes); Mixture-of-Experts: tiny-moe (2-layer Qwen3-MoE, 4 experts, top-2), "
        "qwen3-30b-a3b, qwen3-235b-a22b (Intern-S1's language model).",
    )
    path: str | None = Field(
        None,
        description="Hugging Face checkpoint directory (config + safetensors) inside the pod.",
        min_length=1,
    )
    claim_name: str | None = subdomain(
        "PersistentVolumeClaim mounted read-only at /models holding the checkpoint."
    )


class DataSource(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.path) || has(self.claimName)", "set data.path or data.claimName")
            ]
        }
    )

    path: str | None = Field(None, description="Dataset file or directory inside the pod.", min_length=1)
    claim_name: str | None = subdomain("PersistentVolumeClaim mounted read-only at /data.")
    format: Literal["text", "image-text", "preference", "prompts"] = Field(
        "text", description="Record layout: text, image-text pairs, preference pairs, or RL prompts."
    )
    seq_length: int = Field(4096, ge=16, le=1048576, description="Tokens per training sequence.")
    packing: bool = Field(True, description="Pack several samples into each sequence.")


class DeepSpeed(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!self.offloadParams || self.zeroStage == 3",
                    "offloadParams requires zeroStage 3",
                    ".offloadParams",
                ),
                cel(
                    "!self.offloadOptimizer || self.zeroStage >= 1",
                    "offloadOptimizer requires zeroStage 1 or higher",
                    ".offloadOptimizer",
                ),
            ]
        }
    )

    zero_stage: int = Field(2, ge=0, le=3, description="ZeRO stage 0-3.")
    precision: Literal["bf16", "fp16", "fp32"] = Field("bf16", description="Training precision.")
    offload_optimizer: bool = Field(False, description="Keep optimizer states in CPU memory.")
    offload_params: bool = Field(False, description="Keep parameters in CPU memory (ZeRO-3 only).")
    activation_checkpointing: bool = Field(
        False, description="Recompute each layer's activations in the backward pass: memory for compute."
    )
    micro_batch_size: int = Field(1, ge=1, description="Sequences per GPU per forward pass.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    config: dict[str, Any] | None = Field(
        None, description="Raw ds_config merged over the rendered one, for settings not named here."
    )


class Topology(Placement):
    nodes: int = Field(1, ge=1, le=4096, description="Worker pods (one per node), NNODES of torchrun.")
    gpus_per_node: int = Field(8, ge=0, le=64, description="GPUs per pod, torchrun's nproc_per_node.")
    command: list[str] = Field(
        default_factory=list,
        description="Script or module torchrun starts on every worker (e.g. a torchx AppDef's "
        "entrypoint); empty runs the vlmop trainer of the kind.",
    )
    args: list[str] = Field(default_factory=list, description="Arguments appended to the command.")


class Checkpointing(ApiModel):
    claim_name: str | None = subdomain(
        "PersistentVolumeClaim for checkpoints (ReadWriteMany across nodes); never deleted with the job. "
        "Without one, checkpoints live in the pods and a restart starts from scratch."
    )
    path: str = Field("/checkpoints", description="Mount path of the checkpoint volume.", pattern="^/")
    interval_steps: int = Field(500, ge=1, description="Save every this many optimizer steps.")
    keep_last: int = Field(3, ge=1, description="Complete checkpoints kept; older ones are removed.")
    resume_from: str = Field(
        "latest",
        description="latest (newest complete checkpoint), none, or a checkpoint path.",
        pattern="^(latest|none|/.*)$",
    )


class Optimization(ApiModel):
    learning_rate: float = Field(3e-4, gt=0, description="Peak learning rate.")
    min_learning_rate: float = Field(0.0, ge=0, description="Floor of the schedule.")
    lr_schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay schedule.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay.")
    total_steps: int = Field(1000, ge=1, description="Optimizer steps of the whole run.")
    seed: int = Field(42, description="Seed of model init, data order and sampling.")


class TrainerSpec(ApiModel):
    """A gang of DeepSpeed workers; CascadeRLJob reuses it for its policy trainer."""

    topology: Topology = Field(description="Worker count, GPUs and pod placement.")
    deepspeed: DeepSpeed = sub(DeepSpeed, "DeepSpeed settings rendered into the ds_config.")
    checkpoint: Checkpointing = sub(Checkpointing, "Where and how often checkpoints are written.")
