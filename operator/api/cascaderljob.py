"""CascadeRLJob: an offline MPO stage, then an online GSPO stage with rollouts and a Mixture-of-Rewards.
Defaults follow ../shared/specs/cascade-rl.md (InternVL3.5)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from vlmop.operator.api.common import (
    DNS_LABEL,
    ApiModel,
    BaseStatus,
    CheckpointRequest,
    JobPhase,
    KindInfo,
    LastFailure,
    NetworkPolicy,
    Placement,
    RunPolicy,
    Scheduling,
    cel,
    sub,
    subdomain,
    url,
)
from vlmop.operator.api.training import MOE_PRESET_EXPERTS, DataSource, ModelSource, TrainerSpec


class MPO(ApiModel):
    beta: float = Field(0.1, gt=0, description="β of the preference and quality losses.")
    preference_weight: float = Field(0.8, ge=0, description="w_p of the DPO-sigmoid preference loss.")
    quality_weight: float = Field(0.2, ge=0, description="w_q of the BCO quality loss.")
    generation_weight: float = Field(1.0, ge=0, description="w_g of the SFT generation loss.")
    learning_rate: float = Field(2e-7, gt=0, description="Peak learning rate.")
    lr_schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay schedule.")
    global_batch_size: int = Field(256, ge=1, description="Preference pairs per optimizer step.")
    epochs: int = Field(1, ge=1, description="Passes over the preference data.")


class GSPO(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.miniBatchPrompts <= self.promptsPerStep",
                    "miniBatchPrompts must not exceed promptsPerStep",
                    ".miniBatchPrompts",
                )
            ]
        }
    )

    loss_mode: Literal["gspo", "grpo"] = Field(
        "gspo", description="gspo (sequence-level ratio) or grpo (token-level ratio, for comparison)."
    )
    prompts_per_step: int = Field(512, ge=1, description="Prompts sampled per rollout batch.")
    mini_batch_prompts: int = Field(32, ge=1, description="Prompts per policy update within a batch.")
    learning_rate: float = Field(1e-6, gt=0, description="Learning rate of the policy.")
    clip_low: float = Field(3e-4, gt=0, lt=1, description="ε_low of the ratio clip (GRPO mode: 0.2).")
    clip_high: float = Field(4e-4, gt=0, description="ε_high of the ratio clip (GRPO mode: 0.28).")
    total_steps: int = Field(100, ge=1, description="Rollout batches (policy versions) to train.")


class Sampling(ApiModel):
    group_size: int = Field(16, ge=2, description="G: answers sampled per prompt.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(4096, ge=1, description="Longest answer, in tokens.")


class RolloutPool(Placement):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.engine != 'vllm' || self.gpusPerReplica == 0 || "
                    "self.gpusPerReplica >= self.tensorParallel",
                    "gpusPerReplica must cover tensorParallel",
                    ".gpusPerReplica",
                )
            ]
        }
    )

    engine: Literal["vlmop", "vllm"] = Field(
        "vllm",
        description="Inference engine serving the rollouts: vllm (`vllm serve` of the stage's starting "
        "checkpoint, token ids in and out, each version reloaded in place) or vlmop (the rl image's "
        "transformers server, one request at a time: a fallback for machines without vLLM).",
    )
    max_model_len: int | None = Field(
        None, ge=16, description="vLLM --max-model-len: longest prompt + answer; the model's when empty."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="vLLM --dtype (auto: the checkpoint's, float32 weights served in bfloat16)."
    )
    port: int = Field(8000, ge=1024, le=65535, description="HTTP port of each rollout server.")
    replicas: int = Field(1, ge=1, description="Rollout server replicas.")
    gpus_per_replica: int = Field(1, ge=0, description="GPUs per rollout server.")
    tensor_parallel: int = Field(1, ge=1, description="Tensor-parallel size inside each server.")
    args: list[str] = Field(default_factory=list, description="Extra engine arguments.")
    sampling: Sampling = sub(Sampling, "How answers are sampled.")


class VerifierPool(Placement):
    args: list[str] = Field(
        default_factory=list, description="Arguments of the verifier server (after the image's entry point)."
    )
    port: int = Field(8000, ge=1024, le=65535, description="HTTP port of the verifier server.")
    replicas: int = Field(1, ge=1, description="Verifier server replicas.")
    gpus_per_replica: int = Field(1, ge=0, description="GPUs per verifier server.")


class Verifier(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.type != 'rule' || has(self.rule)", "a rule verifier needs rule", ".rule"),
                cel(
                    "self.type != 'environment' || has(self.environment)",
                    "an environment verifier needs environment",
                    ".environment",
                ),
                cel(
                    "self.type != 'model' || (has(self.endpoint) != has(self.pool))",
                    "a model verifier needs exactly one of endpoint and pool",
                ),
            ]
        }
    )

    name: str = Field(
        description="Name referenced by the routing table (and naming its pool).",
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
    )
    type: Literal["rule", "environment", "model"] = Field(description="rule, environment or model.")
    rule: Literal["math", "multiple-choice", "code"] | None = Field(
        None, description="Rule verifier: math (math-verify), multiple-choice, or code run against tests."
    )
    environment: Literal["arithmetic-24", "sorting", "knights-knaves", "letters"] | None = Field(
        None, description="InternBootcamp-style task environment the trainer knows."
    )
    protocol: Literal["compass-verifier", "polar"] = Field(
        "compass-verifier",
        description="Model verifier protocol: compass-verifier (an OpenAI-compatible chat endpoint judges "
        "A/B/C) or polar (a reward model's scalar from /pooling, vLLM or lmdeploy, the default for a "
        "pool, or /classify, sglang).",
    )
    endpoint: str | None = url("URL of an existing verifier model server (http or https).")
    pool: VerifierPool | None = Field(None, description="A verifier model pool the operator runs.")
    timeout_seconds: float = Field(30.0, gt=0, description="A slower reward scores the failure value.")
    failure_score: float = Field(0.0, description="Reward of a sample whose verifier failed or timed out.")


class Route(ApiModel):
    source: str = Field(description="Task/source name found in each prompt record.", min_length=1)
    verifier: str = Field(description="Name of the verifier that scores this source.", min_length=1)


class Rewards(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.routes.all(r, self.verifiers.exists(v, v.name == r.verifier))",
                    "every route must name a declared verifier",
                    ".routes",
                )
            ]
        }
    )

    verifiers: list[Verifier] = Field(
        min_length=1,
        description="Reward functions available to the routing table.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    routes: list[Route] = Field(
        min_length=1,
        description="Routing table from task/source to verifier (the Mixture-of-Rewards).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["source"]},
    )


class PromptFilter(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.minAccuracy <= self.maxAccuracy", "minAccuracy must not exceed maxAccuracy")
            ]
        }
    )

    min_accuracy: float = Field(0.2, ge=0, le=1, description="Drop prompts solved less often than this.")
    max_accuracy: float = Field(0.8, ge=0, le=1, description="Drop prompts solved more often than this.")
    drop_zero_variance: bool = Field(True, description="Drop groups whose rewards are all equal.")


class WeightSync(ApiModel):
    method: Literal["shared-volume"] = Field(
        "shared-volume",
        description="shared-volume: rank 0 writes each version as safetensors on a claim both trainer "
        "and rollout pool mount, then every rollout server loads it.",
    )
    claim_name: str | None = subdomain(
        "PVC shared by trainer and rollout pool; the checkpoint claim when unset."
    )
    mount_path: str = Field("/weights", pattern="^/", description="Where the weights claim is mounted.")
    interval_steps: int = Field(1, ge=1, description="Publish new weights every this many updates.")


class Stage(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.kind != 'gspo' || has(self.rollout)", "a gspo stage needs rollout", ".rollout"),
                cel("self.kind != 'gspo' || has(self.rewards)", "a gspo stage needs rewards", ".rewards"),
            ]
        }
    )

    name: str = Field(
        description="Stage name, unique in the job.", min_length=1, max_length=40, pattern=DNS_LABEL
    )
    kind: Literal["mpo", "gspo"] = Field(description="mpo (offline preferences) or gspo (online RL).")
    skip: bool = Field(False, description="Leave this stage out; the next starts from the previous one.")
    data: DataSource = Field(description="Preference pairs (mpo) or prompts (gspo).")
    mpo: MPO = sub(MPO, "MPO hyperparameters (kind mpo).")
    gspo: GSPO = sub(GSPO, "GSPO hyperparameters (kind gspo).")
    rollout: RolloutPool | None = Field(None, description="Rollout servers (kind gspo).")
    rewards: Rewards | None = Field(None, description="Verifiers and routing (kind gspo).")
    prompt_filter: PromptFilter = sub(PromptFilter, "Which prompts are kept (kind gspo).")
    weight_sync: WeightSync = sub(WeightSync, "How new weights reach the rollout pool (kind gspo).")
    backoff_limit: int = Field(3, ge=0, description="Restarts of this stage before the job fails.")


class CascadeRLJobSpec(TrainerSpec):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.stages.exists(s, !s.skip)", "at least one stage must not be skipped", ".stages"),
                cel(
                    f"!has(self.model.preset) || !(self.model.preset in {sorted(MOE_PRESET_EXPERTS)})",
                    "the RL trainers take dense models: Mixture-of-Experts presets are for PretrainJob",
                    ".model.preset",
                ),
                cel(
                    "self.stages.filter(s, !s.skip).size() <= 1 || has(self.checkpoint.claimName)",
                    "stages hand over their final model on the checkpoint claim: set checkpoint.claimName",
                    ".checkpoint.claimName",
                ),
                cel(
                    "self.stages.all(s, s.kind != 'gspo' || s.skip || has(s.weightSync.claimName) "
                    "|| has(self.checkpoint.claimName))",
                    "a gspo stage publishes weights to its rollout pool on a shared claim: set "
                    "weightSync.claimName or checkpoint.claimName",
                    ".stages",
                ),
                cel(
                    "self.stages.all(s, s.skip || s.kind != 'gspo' || !has(s.rollout) "
                    "|| s.rollout.engine != 'vllm' || has(self.model.path) "
                    "|| self.stages.filter(t, !t.skip)[0].name != s.name)",
                    "vLLM serves a checkpoint: a gspo stage with rollout.engine vllm needs model.path "
                    "or an earlier stage",
                    ".stages",
                ),
                cel(
                    "!has(self.topology.command) || size(self.topology.command) == 0",
                    "a CascadeRLJob runs the vlmop stage trainers; topology.command is for PretrainJob",
                    ".topology.command",
                ),
            ]
        }
    )

    model: ModelSource = Field(description="Base model the first stage starts from.")
    stages: list[Stage] = Field(
        min_length=1,
        max_length=8,
        description="Ordered stages; each starts from the previous one's final checkpoint.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    run_policy: RunPolicy = sub(RunPolicy, "Deadlines, clean-up and suspension of the whole job.")
    scheduling: Scheduling = sub(Scheduling, "Gang scheduling and priority of the trainer.")
    metrics_port: int = Field(9400, ge=1024, le=65535, description="Port of rank 0's metrics endpoint.")
    network_policy: NetworkPolicy = sub(
        NetworkPolicy, "Who may reach a gspo stage's rollout and verifier pools: its trainer's pods only."
    )


class StageStatus(ApiModel):
    name: str = Field(description="Stage name.")
    kind: str = Field(description="mpo or gspo.")
    phase: str = Field(
        description="Waiting, Pending, Running, Restarting, Succeeded, Failed, Suspended or Skipped."
    )
    restarts: int = Field(0, description="Whole-group restarts of this stage.")
    restarts_counted: int | None = Field(None, description="Of them, those counted against its backoffLimit.")
    in_place_restarts: int | None = Field(
        None, description="Of them, those done in place since the workers' pods were last created."
    )
    last_failure: LastFailure | None = Field(None, description="The stage's last failure and what it cost.")
    step: int | None = Field(None, description="Last reported step.")
    total_steps: int | None = Field(None, description="Steps of the stage.")
    loss: float | None = Field(None, description="Loss at the last reported step.")
    checkpoint: str | None = Field(
        None, description="The stage's exported final model once it succeeded, else its latest checkpoint."
    )
    start_time: str | None = Field(None, description="When the stage started (RFC 3339).")
    completion_time: str | None = Field(None, description="When the stage finished (RFC 3339).")


class VerifierTally(ApiModel):
    scored: int = Field(description="Samples the verifier scored in the last rollout batch.")
    failed: int = Field(description="Samples it failed on (raised, or answered out of protocol).")
    timed_out: int = Field(description="Samples it did not score within its timeoutSeconds.")
    full_score_share: float = Field(description="Share of the scored samples that got 1.0.")
    mean_reward: float = Field(description="Mean reward of the scored samples.")


class CascadeRLJobStatus(BaseStatus):
    phase: JobPhase | None = Field(
        None, description="Pending, Running, Restarting, Succeeded, Failed or Suspended."
    )
    current_stage: str | None = Field(None, description="Name of the running stage.")
    restarts: int = Field(0, description="Whole-group restarts of all stages together.")
    restarts_counted: int | None = Field(None, description="Of them, those counted against a backoffLimit.")
    last_failure: LastFailure | None = Field(None, description="The last failure of any stage.")
    checkpoint_request: CheckpointRequest | None = Field(
        None, description="The checkpoint asked for with the vlmop.io/checkpoint-request annotation."
    )
    start_time: str | None = Field(None, description="When the job started (RFC 3339).")
    completion_time: str | None = Field(None, description="When the job finished (RFC 3339).")
    stages: list[StageStatus] = Field(
        default_factory=list,
        description="Per-stage phase, progress and checkpoint.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    mean_reward_by_source: dict[str, float] = Field(
        default_factory=dict, description="Mean reward of the last rollout batch per task/source."
    )
    rewards_by_verifier: dict[str, VerifierTally] = Field(
        default_factory=dict,
        description="Each verifier's outcomes in the last rollout batch: a verifier that fails, times out "
        "or scores everything 0 shows here within a step.",
    )
    clip_fraction: float | None = Field(None, description="Share of clipped ratios in the last update.")
    policy_version: int | None = Field(None, description="Version of the weights the rollout pool serves.")


CASCADERLJOB = KindInfo(
    kind="CascadeRLJob",
    plural="cascaderljobs",
    short_name="crl",
    description="Cascade RL post-training: offline MPO, then online GSPO with a Mixture-of-Rewards.",
    spec=CascadeRLJobSpec,
    status=CascadeRLJobStatus,
    printer_columns=(
        ("Phase", "string", ".status.phase"),
        ("Stage", "string", ".status.currentStage"),
        ("Progress", "string", ".status.progress"),
        ("Restarts", "integer", ".status.restarts"),
        ("Last Failure", "string", ".status.lastFailure.reason"),
    ),
)
