"""PretrainJob: a gang of DeepSpeed workers that trains, checkpoints, recovers and reports progress."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from vlmop.operator.api.common import (
    ApiModel,
    BaseStatus,
    CheckpointRequest,
    JobPhase,
    KindInfo,
    LastFailure,
    RunPolicy,
    Scheduling,
    cel,
    sub,
)
from vlmop.operator.api.training import (
    MOE_PRESET_EXPERTS,
    DataSource,
    ModelSource,
    Optimization,
    TrainerSpec,
)

IS_MOE = f"has(self.model) && has(self.model.preset) && self.model.preset in {sorted(MOE_PRESET_EXPERTS)}"
EXPERTS = f"(has(self.moe.experts) ? self.moe.experts : {MOE_PRESET_EXPERTS}[self.model.preset])"


class MixtureOfExperts(ApiModel):
    experts: int | None = Field(
        None, ge=1, le=1024, description="Experts per sparse layer (default: preset's)."
    )
    top_k: int | None = Field(
        None, ge=1, le=64, description="Experts a token is routed to (default: preset's)."
    )
    expert_parallel_size: int = Field(
        1,
        ge=1,
        le=1024,
        description="Ranks that share one copy of each layer's experts, each holding experts / "
        "expertParallelSize of them (tokens reach them by all-to-all); divides the ranks.",
    )
    capacity_factor: float | None = Field(
        None,
        gt=0,
        le=64,
        description="Tokens an expert takes per step, over an even share (top-k x tokens / experts); "
        "routes beyond it are dropped and pass through the residual. Unset: dropless.",
    )
    aux_loss_coefficient: float = Field(0.001, ge=0, le=1, description="Weight of the load-balancing loss.")


class PretrainJobSpec(TrainerSpec):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.data) || self.data.format in ['text', 'image-text']",
                    "pretraining reads text or image-text data; preference and prompts are for CascadeRLJob",
                    ".data.format",
                ),
                cel(
                    f"!has(self.moe) || ({IS_MOE}) || (has(self.model) && has(self.model.path))",
                    "moe needs a Mixture-of-Experts model: model.path of a Qwen3-MoE checkpoint or "
                    "model.preset " + ", ".join(sorted(MOE_PRESET_EXPERTS)),
                    ".moe",
                ),
                cel(
                    f"!({IS_MOE}) || self.deepspeed.zeroStage <= 2",
                    "a Mixture-of-Experts model trains under zeroStage 0-2 (DeepSpeed's MoE layers do not "
                    "support ZeRO-3)",
                    ".deepspeed.zeroStage",
                ),
                cel(
                    f"!has(self.moe) || !({IS_MOE}) || {EXPERTS} % self.moe.expertParallelSize == 0",
                    "the experts (moe.experts, or the preset's) must be divisible by moe.expertParallelSize",
                    ".moe.expertParallelSize",
                ),
                cel(
                    f"!has(self.moe) || !has(self.moe.topK) || !({IS_MOE}) || self.moe.topK <= {EXPERTS}",
                    "moe.topK must not exceed the experts (moe.experts, or the preset's)",
                    ".moe.topK",
                ),
                cel(
                    "!has(self.moe) || (self.topology.nodes * (self.topology.gpusPerNode > 0 ? "
                    "self.topology.gpusPerNode : 1)) % self.moe.expertParallelSize == 0",
                    "moe.expertParallelSize must divide the ranks (topology.nodes x gpusPerNode)",
                    ".moe.expertParallelSize",
                ),
                cel(
                    "(has(self.model) && has(self.data)) || size(self.topology.command) > 0",
                    "set model and data, or topology.command to run your own training program",
                    ".model",
                ),
            ]
        }
    )

    model: ModelSource | None = Field(
        None, description="What the vlmop trainer trains: a preset or a checkpoint (unused with a command)."
    )
    data: DataSource | None = Field(
        None, description="Training data and how it is tokenised (unused with topology.command)."
    )
    moe: MixtureOfExperts | None = Field(
        None, description="Routing and expert parallelism of a Mixture-of-Experts preset (DeepSpeed MoE)."
    )
    optimization: Optimization = sub(Optimization, "Learning-rate schedule, steps and seed.")
    run_policy: RunPolicy = sub(RunPolicy, "Restarts, deadlines, clean-up and suspension.")
    scheduling: Scheduling = sub(Scheduling, "Gang scheduling and priority.")
    metrics_port: int = Field(9400, ge=1024, le=65535, description="Port of rank 0's metrics endpoint.")


class PretrainJobStatus(BaseStatus):
    phase: JobPhase | None = Field(
        None, description="Pending, Running, Restarting, Succeeded, Failed or Suspended."
    )
    restarts: int = Field(0, description="Whole-group restarts so far.")
    restarts_counted: int | None = Field(None, description="Of them, those counted against backoffLimit.")
    in_place_restarts: int | None = Field(
        None, description="Of them, those done in place since the workers' pods were last created."
    )
    last_failure: LastFailure | None = Field(None, description="The last failure and what it cost.")
    checkpoint_request: CheckpointRequest | None = Field(
        None, description="The checkpoint asked for with the vlmop.io/checkpoint-request annotation."
    )
    step: int | None = Field(None, description="Last optimizer step reported by rank 0.")
    total_steps: int | None = Field(None, description="Optimizer steps of the whole run.")
    loss: float | None = Field(None, description="Training loss at the last reported step.")
    tokens_per_second: float | None = Field(None, description="Throughput of the whole gang.")
    latest_checkpoint: str | None = Field(None, description="Path of the newest complete checkpoint.")
    aux_loss: float | None = Field(
        None, description="Mixture-of-Experts: the load-balancing loss of a layer at the last step."
    )
    expert_load_imbalance: float | None = Field(
        None,
        description="Mixture-of-Experts: tokens of the busiest expert over an even share at the last step "
        "(1.0 is balanced; the worst layer).",
    )
    start_time: str | None = Field(None, description="When the job started (RFC 3339).")
    completion_time: str | None = Field(None, description="When the job finished (RFC 3339).")


PRETRAINJOB = KindInfo(
    kind="PretrainJob",
    plural="pretrainjobs",
    short_name="ptj",
    description="Pretrains a (vision-)language model with a gang of DeepSpeed workers.",
    spec=PretrainJobSpec,
    status=PretrainJobStatus,
    printer_columns=(
        ("Phase", "string", ".status.phase"),
        ("Progress", "string", ".status.progress"),
        ("Loss", "number", ".status.loss"),
        ("Restarts", "integer", ".status.restarts"),
        ("Last Failure", "string", ".status.lastFailure.reason"),
    ),
)
