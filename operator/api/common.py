"""Building blocks shared by the three kinds: the camelCase base model, pod placement, run policy,
gang scheduling and the status conditions of the Kubernetes API conventions."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "vlmop.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, snake_case in Python, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def sub(model: type[BaseModel], description: str) -> Any:
    """A nested object that defaults to `{}`, so the API server fills in its own field defaults."""
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One x-kubernetes-validations entry; fieldPath makes the API server name the field in errors."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


Quantity = int | str  # becomes x-kubernetes-int-or-string, like resource.Quantity

# Kubernetes' own formats (apimachinery's validation), so a name it would refuse only when a pod is
# created is refused at admission, naming the field.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"  # a C identifier, relaxed as Kubernetes allows
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"  # a Secret's or ConfigMap's key
QUALIFIED_NAME = DNS_SUBDOMAIN[:-1].replace("^", "^(") + "/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
URL = r"^https?://[^\s/?#]+[^\s]*$"
NO_SPACE = r"^\S+$"


def subdomain(description: str) -> Any:
    """An optional name of a Kubernetes object (a claim, a Secret, a ServiceAccount...)."""
    return Field(None, description=description, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)


def url(description: str) -> Any:
    return Field(None, description=description, min_length=1, max_length=2048, pattern=URL)


class Resources(ApiModel):
    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Minimum compute resources, e.g. {cpu: 8, memory: 64Gi}."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Maximum compute resources; GPUs are added from the GPU count."
    )


class Toleration(ApiModel):
    key: str | None = Field(None, description="Taint key the toleration applies to; empty matches all.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(None, description="Taint value to match when operator is Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        None, description="How long a NoExecute taint is tolerated before eviction."
    )


class SecretKeyRef(ApiModel):
    name: str = Field(
        description="Name of a Secret in the resource's namespace.",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    key: str = Field(description="Key inside the Secret.", min_length=1, max_length=253, pattern=CONFIG_KEY)
    optional: bool = Field(False, description="Leave the variable unset when the Secret or key is missing.")


class EnvVar(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.value) && has(self.secretKeyRef))",
                    "set value or secretKeyRef, not both",
                )
            ]
        }
    )

    name: str = Field(description="Variable name.", min_length=1, max_length=1024, pattern=ENV_NAME)
    value: str | None = Field(None, description="Literal value (never a secret: use secretKeyRef).")
    secret_key_ref: SecretKeyRef | None = Field(None, description="Take the value from a Secret key.")


class Volume(ApiModel):
    name: str = Field(
        description="Volume name, unique in the pod.", min_length=1, max_length=63, pattern=DNS_LABEL
    )
    claim_name: str = Field(
        description="PersistentVolumeClaim to mount.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN
    )
    mount_path: str = Field(description="Where the claim appears in the containers.", pattern="^/")
    read_only: bool = Field(False, description="Mount read-only.")


class Placement(ApiModel):
    """Where and how the pods of one group run."""

    image: str = Field(
        description="Container image of this group's pods (pin it by tag or digest).",
        min_length=1,
        pattern=NO_SPACE,
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="When the kubelet pulls the image."
    )
    gpu_resource_name: str = Field(
        "nvidia.com/gpu",
        description="Extended resource that counts GPUs on the nodes.",
        max_length=316,
        pattern=QUALIFIED_NAME,
    )
    resources: Resources = sub(Resources, "CPU and memory requests and limits of each pod.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods require.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints the pods tolerate.")
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Extra environment variables, each name once.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    volumes: list[Volume] = Field(
        default_factory=list,
        description="Extra PersistentVolumeClaims mounted into every pod of the group.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    service_account_name: str | None = subdomain(
        "ServiceAccount of the pods; the namespace default when unset."
    )


FailureAction = Literal["Fail", "Restart", "RestartIgnoringBudget"]
# What a failure can be matched on besides exit codes and messages: the container's terminated reason,
# the pod's status reason, a True pod condition, and the classes the operator gives (failures.py).
FailureReason = Literal[
    "OOMKilled",
    "Error",
    "Evicted",
    "Preempted",
    "NodeLost",
    "DisruptionTarget",
    "Terminated",
    "SavedOnSigterm",
    "JobFailed",
]


class FailureRule(ApiModel):
    """One rule: every matcher given must match (none given: any failure); the first matching rule acts."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                # matches() compiles the pattern: one that does not compile fails the rule.
                cel(
                    "!has(self.onMessage) || "
                    "(size(self.onMessage) > 0 && ('').matches(self.onMessage) in [true, false])",
                    "onMessage must be a non-empty regular expression (RE2)",
                    ".onMessage",
                ),
            ]
        }
    )

    action: FailureAction = Field(
        description="Fail (end the job now), Restart (the whole group, counted against backoffLimit) or "
        "RestartIgnoringBudget (not counted: disruptions)."
    )
    on_exit_codes: list[int] = Field(
        default_factory=list,
        max_length=32,
        description="Matches when the failing container exited with one of these codes.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    on_reasons: list[FailureReason] = Field(
        default_factory=list,
        max_length=16,
        description="Matches any of these: OOMKilled, Error (a non-zero exit), Evicted, Preempted, NodeLost, "
        "DisruptionTarget (the pod's condition), Terminated (stopped by SIGTERM), SavedOnSigterm (the "
        "trainer saved and exited on SIGTERM), JobFailed (the attempt's Job failed without a failed pod to "
        "say why).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    on_message: str | None = Field(
        None,
        max_length=1024,
        description="A regular expression (RE2 syntax, searched) over the failing pod's termination message.",
    )
    stages: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="CascadeRLJob stage names the rule applies to; empty: every stage (and a PretrainJob).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @field_validator("on_message")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            re.compile(pattern)  # re.error is a ValueError: pydantic names the field
        return pattern


class FailurePolicy(ApiModel):
    """What a failure costs. The rules come first; then the defaults: a disruption (eviction, preemption,
    node loss, a save on SIGTERM) restarts without counting; a failure whose message is the same as the
    previous attempt's fails the job at once (a bad flag will not fix itself); anything else restarts,
    counted against backoffLimit."""

    rules: list[FailureRule] = Field(
        default_factory=list, max_length=32, description="Ordered rules; the first that matches decides."
    )
    fail_on_repeated_message: bool = Field(
        True, description="Fail when an attempt fails with the same message as the attempt before it."
    )
    restart_strategy: Literal["InPlace", "Recreate"] = Field(
        "InPlace",
        description="InPlace: a restart keeps the workers' pods and restarts their processes through the "
        "vlmop supervisor each worker runs first (the image needs vlmop; pods that are gone are re-created "
        "with the rest); Recreate: every restart re-creates every pod.",
    )


class RunPolicy(ApiModel):
    """How long a job may run and how often it is restarted, as in Kubeflow Trainer's runPolicy."""

    backoff_limit: int = Field(
        3, ge=0, description="Whole-group restarts counted against the budget before the job fails."
    )
    failure_policy: FailurePolicy = sub(
        FailurePolicy, "Which failures fail the job, restart it, or restart it without counting."
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Wall-clock limit of the job; exceeded means Failed/DeadlineExceeded."
    )
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Delete the finished job (never its checkpoints) after this many seconds."
    )
    suspend: bool = Field(False, description="Stop the pods and keep the checkpoints; false resumes.")


class Scheduling(ApiModel):
    """Gang scheduling: all pods of a group start together or not at all."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.gang != 'kueue' || has(self.queueName)",
                    "queueName is required when gang is kueue",
                    ".queueName",
                )
            ]
        }
    )

    gang: Literal["none", "volcano", "coscheduling", "kueue", "kubernetes"] = Field(
        "none",
        description="none; volcano (Volcano PodGroup); coscheduling (scheduler-plugins PodGroup); "
        "kueue (queue-name label, the job created suspended until admitted); kubernetes (Kubernetes "
        "1.37's own gang scheduling: a scheduling.k8s.io/v1beta1 Workload and PodGroup per attempt, the "
        "GenericWorkload feature gate; a gspo stage's trainer and rollout pool as one composite gang, "
        "which needs v1alpha3's CompositePodGroup).",
    )
    queue_name: str | None = subdomain("Volcano queue or Kueue LocalQueue name.")
    priority_class_name: str | None = subdomain("PriorityClass of the pods.")
    scheduler_name: str | None = Field(
        None,
        description="schedulerName of the pods; unset picks volcano for gang volcano, "
        "scheduler-plugins-scheduler for coscheduling, and the default scheduler otherwise.",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    schedule_timeout_seconds: int = Field(
        300, ge=1, description="How long a gang may wait for all of its pods to be placed."
    )


class LabelSelector(ApiModel):
    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels to match; empty matches every object."
    )


class NetworkPeer(ApiModel):
    """A NetworkPolicyPeer: pods by label, in namespaces by label (both: those pods in those namespaces)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.namespaceSelector) || has(self.podSelector)",
                    "set namespaceSelector, podSelector or both",
                )
            ]
        }
    )

    namespace_selector: LabelSelector | None = Field(
        None,
        description="Namespaces of the peer, e.g. {matchLabels: {kubernetes.io/metadata.name: monitoring}}; "
        "unset: the resource's own namespace.",
    )
    pod_selector: LabelSelector | None = Field(
        None, description="Pods of the peer; unset: every pod of the selected namespaces."
    )


class NetworkPolicy(ApiModel):
    """One NetworkPolicy per server pool, so only the pool's own clients reach its port (which also
    serves control routes, such as a rollout server's weight reload)."""

    enabled: bool = Field(True, description="Create the NetworkPolicies (the CNI must enforce them).")
    metrics_from: list[NetworkPeer] = Field(
        default_factory=list,
        max_length=16,
        description="Extra peers allowed on the restricted pools' ports (which also serve /metrics), e.g. "
        "the Prometheus that scrapes them.",
    )


ConditionStatus = Literal["True", "False", "Unknown"]
JobPhase = Literal["Pending", "Running", "Restarting", "Succeeded", "Failed", "Suspended"]


class Condition(ApiModel):
    """One observation, following metav1.Condition."""

    type: str = Field(description="Condition type: Ready, Progressing, Succeeded, Failed.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase machine-readable reason of the last transition.")
    message: str = Field("", description="Human-readable details.")
    last_transition_time: str = Field(
        description="When status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(
        None, description="metadata.generation the condition was computed from."
    )


class LastFailure(ApiModel):
    """The last failure of a gang and what the failure policy made of it."""

    reason: str = Field(description="Its class: OOMKilled, Error, a disruption's reason, JobFailed.")
    message: str = Field(description="What the failing pod said (the end of it).")
    exit_code: int | None = Field(None, description="The failing container's exit code.")
    action: FailureAction = Field(
        description="What the failure policy did: Fail, Restart, RestartIgnoringBudget."
    )
    time: str = Field(description="When it was seen (RFC 3339).", json_schema_extra={"format": "date-time"})


class CheckpointRequest(ApiModel):
    """A checkpoint asked for with the vlmop.io/checkpoint-request annotation (its value, the token)."""

    token: str = Field(description="The annotation's value this entry follows.")
    state: Literal["Requested", "Saved"] | None = Field(
        None,
        description="Requested: rank 0 took it; Saved: the checkpoint is complete. Unset: not asked yet.",
    )
    attempt: int | None = Field(None, description="The attempt (restarts) rank 0 was asked in.")
    step: int | None = Field(None, description="The step saved.")
    checkpoint: str | None = Field(None, description="Path of the checkpoint saved.")


class BaseStatus(ApiModel):
    """What every kind reports; written only by the operator through the status subresource."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: int | None = Field(None, description="Last metadata.generation reconciled.")
    phase: str | None = Field(None, description="Coarse lifecycle phase for people and printer columns.")
    progress: str | None = Field(None, description="Short progress summary shown by kubectl get.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Observations per the Kubernetes API conventions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class KindInfo(BaseModel):
    """How one kind is named and shown: everything crdgen needs besides the schema."""

    model_config = ConfigDict(frozen=True)

    kind: str
    plural: str
    short_name: str
    description: str
    spec: type[ApiModel]
    status: type[BaseStatus]
    # Children are named <name>-<suffix>, and pod hostnames must fit in a 63-character DNS label.
    max_name_length: int = 40
    printer_columns: tuple[tuple[str, str, str], ...] = (
        ("Phase", "string", ".status.phase"),
        ("Progress", "string", ".status.progress"),
    )

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"
