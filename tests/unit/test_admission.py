"""Admission from the generated schemas (prune, default, validate, CEL), as the local API server
applies it: examples pass, each invalid spec is refused with a message naming its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vlmop.operator import crdgen
from vlmop.operator.api import CASCADERLJOB, DVDDEPLOYMENT, KINDS, PRETRAINJOB, KindInfo
from vlmop.operator.localapi.admission import StructuralSchema
from vlmop.operator.reconcile import spec_errors

SCHEMAS = {info.kind: StructuralSchema(crdgen.kind_schema(info)) for info in KINDS}
INFO = {info.kind: info for info in KINDS}
EXAMPLE_OF = {"PretrainJob": "pretrainjob", "CascadeRLJob": "cascaderljob", "DvDDeployment": "dvddeployment"}


def with_change(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


DELETE = object()

INVALID = [
    # kind, change path, value, field named in the error, words in the message
    ("PretrainJob", "spec.topology.nodes", 0, "spec.topology.nodes", "greater than or equal to 1"),
    ("PretrainJob", "spec.deepspeed.zeroStage", 4, "spec.deepspeed.zeroStage", "less than or equal to 3"),
    ("PretrainJob", "spec.deepspeed.precision", "fp8", "spec.deepspeed.precision", "supported values"),
    ("PretrainJob", "spec.model.preset", "gpt-9", "spec.model.preset", "supported values"),
    ("CascadeRLJob", "spec.model.preset", "tiny-moe", "spec.model.preset", "Mixture-of-Experts presets"),
    ("PretrainJob", "spec.data.format", "preference", "spec.data.format", "preference and prompts are for"),
    ("PretrainJob", "spec.topology", DELETE, "spec.topology", "Required value"),
    ("PretrainJob", "spec.model", DELETE, "spec.model", "or topology.command to run your own"),
    ("PretrainJob", "spec.model.path", "/m", "spec.model", "exactly one of model.preset and model.path"),
    ("PretrainJob", "spec.deepspeed.offloadParams", True, "spec.deepspeed.offloadParams", "zeroStage 3"),
    ("PretrainJob", "spec.scheduling.gang", "kueue", "spec.scheduling.queueName", "queueName is required"),
    ("PretrainJob", "spec.optimization.learningRate", 0, "spec.optimization.learningRate", "greater than 0"),
    ("PretrainJob", "spec.data", {"format": "text"}, "spec.data", "data.path or data.claimName"),
    (
        "PretrainJob",
        "spec.topology.env",
        [{"name": "T", "value": "x", "secretKeyRef": {"name": "s", "key": "k"}}],
        "spec.topology.env[0]",
        "value or secretKeyRef, not both",
    ),
    (
        "PretrainJob",
        "spec.topology.volumes",
        [{"name": "v", "claimName": "c", "mountPath": "rel"}],
        "spec.topology.volumes[0].mountPath",
        "does not match",
    ),
    (
        "PretrainJob",
        "spec.runPolicy.failurePolicy.rules",
        [{"action": "Fail", "onMessage": "CUDA error: ("}],
        "spec.runPolicy.failurePolicy.rules[0].onMessage",
        "non-empty regular expression",
    ),
    (
        "PretrainJob",
        "spec.runPolicy.failurePolicy.rules",
        [{"action": "Fail", "onMessage": ""}],
        "spec.runPolicy.failurePolicy.rules[0].onMessage",
        "non-empty regular expression",
    ),
    (
        "PretrainJob",
        "spec.runPolicy.failurePolicy.rules",
        [{"action": "Retry"}],
        "spec.runPolicy.failurePolicy.rules[0].action",
        "supported values",
    ),
    (
        "PretrainJob",
        "spec.runPolicy.failurePolicy.rules",
        [{"action": "Fail", "onReasons": ["Segfault"]}],
        "spec.runPolicy.failurePolicy.rules[0].onReasons[0]",
        "supported values",
    ),
    # Names Kubernetes refuses only when the pod is created, refused here naming the field.
    (
        "PretrainJob",
        "spec.topology.env",
        [{"name": "MY VAR", "value": "1"}],
        "spec.topology.env[0].name",
        "does not match",
    ),
    (
        "PretrainJob",
        "spec.topology.env",
        [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
        "spec.topology.env[1]",
        "Duplicate value",
    ),
    (
        "PretrainJob",
        "spec.checkpoint.claimName",
        "Checkpoints_Claim",
        "spec.checkpoint.claimName",
        "does not match",
    ),
    ("PretrainJob", "spec.data.claimName", "", "spec.data.claimName", "should be at least"),
    ("PretrainJob", "spec.topology.image", "", "spec.topology.image", "should be at least"),
    ("PretrainJob", "spec.topology.image", "ghcr.io/x/y:1 ", "spec.topology.image", "does not match"),
    (
        "PretrainJob",
        "spec.topology.serviceAccountName",
        "Trainer",
        "spec.topology.serviceAccountName",
        "does not match",
    ),
    (
        "PretrainJob",
        "spec.topology.volumes",
        [{"name": "Cache", "claimName": "c", "mountPath": "/c"}],
        "spec.topology.volumes[0].name",
        "does not match",
    ),
    (
        "PretrainJob",
        "spec.topology.volumes",
        [
            {"name": "c", "claimName": "c", "mountPath": "/c"},
            {"name": "c", "claimName": "d", "mountPath": "/d"},
        ],
        "spec.topology.volumes[1]",
        "Duplicate value",
    ),
    (
        "PretrainJob",
        "spec.topology.gpuResourceName",
        "nvidia gpu",
        "spec.topology.gpuResourceName",
        "does not match",
    ),
    ("PretrainJob", "spec.checkpoint.resumeFrom", "step-100", "spec.checkpoint.resumeFrom", "does not match"),
    (
        "PretrainJob",
        "spec.scheduling.priorityClassName",
        "",
        "spec.scheduling.priorityClassName",
        "should be at least",
    ),
    (
        "DvDDeployment",
        "spec.autoscaling.prometheusUrl",
        "prometheus:9090",
        "spec.autoscaling.prometheusUrl",
        "does not match",
    ),
    ("DvDDeployment", "spec.modelClaimName", "models/", "spec.modelClaimName", "does not match"),
    (
        "DvDDeployment",
        "spec.gateway.authSecretRef",
        {"name": "s", "key": "a key"},
        "spec.gateway.authSecretRef.key",
        "does not match",
    ),
    ("CascadeRLJob", "spec.stages.1.name", "mpo", "spec.stages[1]", "Duplicate value"),
    (
        "CascadeRLJob",
        "spec.stages.1.rewards.verifiers.0.name",
        "Math",
        "spec.stages[1].rewards.verifiers[0].name",
        "does not match",
    ),
    ("CascadeRLJob", "spec.stages.1.rollout", DELETE, "spec.stages[1].rollout", "needs rollout"),
    (
        "CascadeRLJob",
        "spec.stages.1.rewards.routes.0.verifier",
        "nope",
        "spec.stages[1].rewards.routes",
        "declared verifier",
    ),
    (
        "CascadeRLJob",
        "spec.stages.1.promptFilter",
        {"minAccuracy": 0.9, "maxAccuracy": 0.1},
        "spec.stages[1].promptFilter",
        "minAccuracy must not exceed maxAccuracy",
    ),
    ("CascadeRLJob", "spec.stages.0.kind", "ppo", "spec.stages[0].kind", "supported values"),
    (
        "CascadeRLJob",
        "spec.stages.1.rewards.verifiers.2.environment",
        "chess",
        "spec.stages[1].rewards.verifiers[2].environment",
        "supported values",
    ),
    (
        "CascadeRLJob",
        "spec.stages.1.gspo.miniBatchPrompts",
        1000,
        "spec.stages[1].gspo.miniBatchPrompts",
        "must not exceed promptsPerStep",
    ),
    ("CascadeRLJob", "spec.stages", [], "spec.stages", "at least this many items: 1"),
    (
        "CascadeRLJob",
        "spec.checkpoint.claimName",
        DELETE,
        "spec.checkpoint.claimName",
        "hand over their final model on the checkpoint claim",
    ),
    (
        "CascadeRLJob",
        "spec.topology.command",
        ["train.py"],
        "spec.topology.command",
        "topology.command is for PretrainJob",
    ),
    (
        "CascadeRLJob",
        "spec.stages.1.rollout.engine",
        "sglang",
        "spec.stages[1].rollout.engine",
        "supported values",
    ),
    (
        "CascadeRLJob",
        "spec.stages.1.weightSync.method",
        "broadcast",
        "spec.stages[1].weightSync.method",
        "supported values",
    ),
    ("DvDDeployment", "spec.vision.minReplicas", 9, "spec.vision.minReplicas", "must not exceed maxReplicas"),
    (
        "DvDDeployment",
        "spec.language.tensorParallel",
        4,
        "spec.language.gpusPerReplica",
        "gpusPerReplica must cover tensorParallel",
    ),
    (
        "DvDDeployment",
        "spec.autoscaling.prometheusUrl",
        DELETE,
        "spec.autoscaling.prometheusUrl",
        "prometheusUrl is required",
    ),
    (
        "DvDDeployment",
        "spec.gateway.authSecretRef",
        {"name": "s"},
        "spec.gateway.authSecretRef.key",
        "Required value",
    ),
    (
        "DvDDeployment",
        "spec.networkPolicy.metricsFrom",
        [{}],
        "spec.networkPolicy.metricsFrom[0]",
        "set namespaceSelector, podSelector or both",
    ),
]


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_examples_are_admitted_and_parse(info: KindInfo, examples: dict[str, dict[str, Any]]) -> None:
    doc = examples[EXAMPLE_OF[info.kind]]
    assert SCHEMAS[info.kind].admit(doc) == []
    assert spec_errors(info, doc["spec"]) is None


@pytest.mark.parametrize(
    ("kind", "path", "value", "field", "words"), INVALID, ids=[f"{c[0]}:{c[1]}" for c in INVALID]
)
def test_invalid_specs_name_the_field(
    kind: str, path: str, value: Any, field: str, words: str, examples: dict[str, dict[str, Any]]
) -> None:
    doc = with_change(examples[EXAMPLE_OF[kind]], path, value)
    causes = SCHEMAS[kind].admit(doc)
    assert any(c["field"] == field and words in c["message"] for c in causes), causes


def test_a_pretrainjob_with_its_own_program_needs_no_model_or_data(examples: dict[str, Any]) -> None:
    doc = with_change(examples["pretrainjob"], "spec.topology.command", ["train.py"])
    del doc["spec"]["model"], doc["spec"]["data"]
    assert SCHEMAS["PretrainJob"].admit(doc) == []
    assert spec_errors(PRETRAINJOB, doc["spec"]) is None


def test_moe_settings_are_checked_against_the_preset_and_the_ranks(examples: dict[str, Any]) -> None:
    """The example's 2 ranks; tiny-moe has 4 experts, top-2."""
    base = with_change(examples["pretrainjob"], "spec.model.preset", "tiny-moe")
    ep2 = with_change(base, "spec.moe", {"topK": 2, "expertParallelSize": 2})
    assert SCHEMAS["PretrainJob"].admit(ep2) == []
    assert SCHEMAS["PretrainJob"].admit(copy.deepcopy(base)) == []  # the preset's own routing, EP 1
    ep = "spec.moe.expertParallelSize"
    refused = [
        (with_change(examples["pretrainjob"], "spec.moe", {"experts": 4}), "spec.moe", "Mixture-of-Experts"),
        (with_change(base, "spec.moe", {"experts": 6, "expertParallelSize": 4}), ep, "divisible by"),
        (with_change(base, "spec.moe", {"expertParallelSize": 3}), ep, "divisible by"),  # the preset's 4
        (with_change(base, "spec.moe", {"experts": 8, "expertParallelSize": 4}), ep, "must divide the ranks"),
        (with_change(base, "spec.moe", {"topK": 8}), "spec.moe.topK", "must not exceed the experts"),
        (with_change(base, "spec.deepspeed.zeroStage", 3), "spec.deepspeed.zeroStage", "zeroStage 0-2"),
    ]
    for doc, field, words in refused:
        causes = SCHEMAS["PretrainJob"].admit(doc)
        assert any(c["field"] == field and words in c["message"] for c in causes), (field, causes)


def test_vllm_rollouts_need_a_checkpoint_to_serve(examples: dict[str, Any]) -> None:
    """A gspo stage that starts from a preset has nothing for `vllm serve` to load: refused, naming
    the engine; with the MPO stage before it (its export) or a model path it is admitted."""
    doc = with_change(examples["cascaderljob"], "spec.stages.0.skip", True)
    causes = SCHEMAS["CascadeRLJob"].admit(copy.deepcopy(doc))
    assert any(c["field"] == "spec.stages" and "rollout.engine vllm" in c["message"] for c in causes), causes
    assert SCHEMAS["CascadeRLJob"].admit(with_change(doc, "spec.model", {"path": "/models/m"})) == []
    assert SCHEMAS["CascadeRLJob"].admit(with_change(doc, "spec.stages.1.rollout.engine", "vlmop")) == []


def test_defaults_fill_nested_objects_and_unknown_fields_are_pruned(examples: dict[str, Any]) -> None:
    doc = with_change(examples["pretrainjob"], "spec.typo", 1)
    doc["spec"].pop("deepspeed")
    assert SCHEMAS["PretrainJob"].admit(doc) == []
    assert "typo" not in doc["spec"]
    assert doc["spec"]["deepspeed"] == {
        "zeroStage": 2,
        "precision": "bf16",
        "offloadOptimizer": False,
        "offloadParams": False,
        "activationCheckpointing": False,
        "microBatchSize": 1,
        "gradientAccumulationSteps": 1,
    }
    assert doc["spec"]["runPolicy"]["backoffLimit"] == 3


def test_free_form_fields_survive_pruning(examples: dict[str, Any]) -> None:
    raw = {"zero_optimization": {"overlap_comm": True}, "wall_clock_breakdown": False}
    doc = with_change(examples["pretrainjob"], "spec.deepspeed.config", raw)
    assert SCHEMAS["PretrainJob"].admit(doc) == []
    assert doc["spec"]["deepspeed"]["config"] == raw


def test_status_only_checks_status(examples: dict[str, Any]) -> None:
    doc = with_change(examples["pretrainjob"], "spec.topology.nodes", 0)
    doc["status"] = {"phase": "Bogus"}
    causes = SCHEMAS["PretrainJob"].admit(doc, root="status")
    assert [c["field"] for c in causes] == ["status.phase"]


def test_operator_side_parse_names_the_field() -> None:
    errors = spec_errors(
        PRETRAINJOB,
        {"model": {"preset": "tiny"}, "data": {"path": "/d"}, "topology": {"image": "i", "nodes": "many"}},
    )
    assert errors is not None and "spec.topology.nodes" in errors
    assert spec_errors(DVDDEPLOYMENT, {}) is not None
    assert spec_errors(CASCADERLJOB, {"model": {"preset": "tiny"}}) is not None


def test_updates_ratchet_over_values_left_unchanged(examples: dict[str, Any]) -> None:
    stored = with_change(examples["pretrainjob"], "spec.topology.nodes", "many")
    labelled = with_change(stored, "metadata.labels", {"a": "b"})
    assert SCHEMAS["PretrainJob"].admit(labelled, old=stored) == []
    worse = with_change(labelled, "spec.topology.nodes", "more")
    assert [c["field"] for c in SCHEMAS["PretrainJob"].admit(worse, old=stored)] == ["spec.topology.nodes"]


def test_cel_rules_of_unchanged_values_are_not_evaluated_again(examples: dict[str, Any]) -> None:
    # Stored under an older schema: spec.deepspeed breaks a CEL rule (offloadParams needs ZeRO-3).
    stored = with_change(examples["pretrainjob"], "spec.deepspeed", {"zeroStage": 2, "offloadParams": True})
    given_status = with_change(stored, "status", {"phase": "Running"})
    assert SCHEMAS["PretrainJob"].admit(given_status, root="status", old=stored) == []
    assert SCHEMAS["PretrainJob"].admit(copy.deepcopy(given_status), old=stored) == []
    # A change inside that subtree evaluates its rules again: the changed field's rule fails, the
    # unchanged field's failure is ratcheted away.
    changed = with_change(given_status, "spec.deepspeed.offloadOptimizer", True)
    changed["spec"]["deepspeed"]["zeroStage"] = 0
    causes = SCHEMAS["PretrainJob"].admit(changed, old=stored)
    assert [c["field"] for c in causes] == ["spec.deepspeed.offloadOptimizer"]
    # The stored object created anew is refused.
    fields = [c["field"] for c in SCHEMAS["PretrainJob"].admit(copy.deepcopy(stored))]
    assert fields == ["spec.deepspeed.offloadParams"]
