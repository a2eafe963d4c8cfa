"""PretrainJob: a gang of DeepSpeed workers that trains, checkpoints, recovers and reports progress."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from vlmop.operator.api.common import (
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
from vlmop.operator.api.training import DataSource, ModelSource, Optimization, TrainerSpec


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
