"""A gang of torchrun workers: a headless Service for rendezvous, an Indexed Job with one pod per node,
and the PodGroup (Volcano, scheduler-plugins or Kubernetes' own with its Workload) or Kueue label that
makes them start together.

A restart that re-creates the pods is a new Job named <owner>[-<group>]-r<attempt>, so the pods of a
failed attempt never mix with the next one and MASTER_ADDR (pod 0's stable DNS name) changes with the
attempt. With restartStrategy InPlace each worker runs the supervisor first: a restart that finds
every worker's pod alive restarts their processes in the same Job (operator/inplace.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vlmop.operator.api.common import EnvVar, Scheduling, Volume
from vlmop.operator.api.training import Topology
from vlmop.operator.builders.common import COMPANION_OF, Manifest, owned, owner_labels, restricted_security

MASTER_PORT = 29500
SUPERVISOR_PORT = 29501  # the in-place restarts' supervisor (vlmop.workloads.common.supervisor)
SUPERVISOR = ["python", "-m", "vlmop.workloads.common.supervisor", f"--port={SUPERVISOR_PORT}", "--"]
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
ATTEMPT = "vlmop.io/attempt"
CONFIG_DIR = "/etc/vlmop"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
COSCHEDULING_LABEL = "scheduling.x-k8s.io/pod-group"
VOLCANO_ANNOTATION = "scheduling.k8s.io/group-name"
# SIGTERM gives the trainer this long to finish a checkpoint before the kubelet kills it.
GRACE_SECONDS = 300
DEFAULT_SCHEDULER = {"volcano": "volcano", "coscheduling": "scheduler-plugins-scheduler"}
NATIVE, NATIVE_COMPOSITE = "scheduling.k8s.io/v1beta1", "scheduling.k8s.io/v1alpha3"
WORKERS, COMPOSITE = "workers", "gang"  # the Workload's template names


@dataclass(frozen=True)
class Gang:
    owner: Mapping[str, Any]  # the custom object (apiVersion, kind, metadata.name/namespace/uid)
    component: str
    topology: Topology
    scheduling: Scheduling
    program: list[str]  # what torchrun starts on every node: a script or -m module, then its args
    attempt: int
    group: str | None = None  # one of several gangs of the owner, run one after another (a stage)
    config_map: str | None = None  # mounted read-only at CONFIG_DIR
    mounts: list[Volume] = field(default_factory=list)  # the kind's own claims (data, checkpoints)
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    supervised: bool = False  # restartStrategy InPlace: the supervisor runs torchrun and restarts it

    @property
    def name(self) -> str:
        return str(self.owner["metadata"]["name"])

    @property
    def service(self) -> str:
        return f"{self.name}-workers"

    @property
    def job(self) -> str:
        return job_name(self.name, self.attempt, self.group)

    @property
    def master_addr(self) -> str:
        return f"{self.job}-0.{self.service}.{self.owner['metadata']['namespace']}.svc"


def job_name(owner: str, attempt: int, group: str | None = None) -> str:
    """The attempt's Job: <owner>[-<group>]-r<attempt> (also what the indexes are looked up by)."""
    return f"{owner}-{group}-r{attempt}" if group else f"{owner}-r{attempt}"


def headless_service(gang: Gang) -> Manifest:
    """Gives every worker pod the DNS name <job>-<index>.<service>; not-ready pods resolve too, since
    rendezvous happens before any readiness."""
    ports = {"rendezvous": MASTER_PORT, **gang.ports}
    return owned(
        gang.owner,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": gang.service},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {"vlmop.io/owner-name": gang.name, "app.kubernetes.io/component": gang.component},
                "ports": [{"name": n, "port": p, "targetPort": p} for n, p in sorted(ports.items())],
            },
        },
        gang.component,
    )


def pod_groups(gang: Gang, members: Mapping[str, int] | None = None) -> list[Manifest]:
    """What makes the gang start together: a Volcano or scheduler-plugins PodGroup, or Kubernetes'
    own Workload and PodGroup. `members`: other groups that must start with it (a rollout pool's
    minimum replicas, by name): with the kubernetes gang, one composite gang over all of them."""
    if gang.scheduling.gang == "kubernetes":
        return native_gang(gang, members or {})
    group = pod_group(gang)
    return [group] if group else []


def pod_group(gang: Gang) -> Manifest | None:
    sched, nodes = gang.scheduling, gang.topology.nodes
    if sched.gang == "volcano":
        spec: dict[str, Any] = {"minMember": nodes}
        if sched.queue_name:
            spec["queue"] = sched.queue_name
        if sched.priority_class_name:
            spec["priorityClassName"] = sched.priority_class_name
        api = "scheduling.volcano.sh/v1beta1"
    elif sched.gang == "coscheduling":
        spec = {"minMember": nodes, "scheduleTimeoutSeconds": sched.schedule_timeout_seconds}
        api = "scheduling.x-k8s.io/v1alpha1"
    else:
        return None
    manifest = {"apiVersion": api, "kind": "PodGroup", "metadata": {"name": gang.job}, "spec": spec}
    return owned(gang.owner, manifest, gang.component)


def native_gang(gang: Gang, members: Mapping[str, int]) -> list[Manifest]:
    """Kubernetes 1.37's gang scheduling (scheduling.k8s.io/v1beta1, the GenericWorkload gate): a
    Workload per attempt with a gang template for the workers (minCount = nodes) and a PodGroup of it
    that the pods name in spec.schedulingGroup. With `members`, the Workload's template is a composite
    (all-or-nothing over every group, v1alpha3's CompositePodGroup) holding the workers' group and one
    per member, `<job>-<member>`."""
    sched, job = gang.scheduling, gang.job
    priority = {"priorityClassName": sched.priority_class_name} if sched.priority_class_name else {}
    groups = {WORKERS: gang.topology.nodes, **members}
    templates = [{"name": name, "schedulingPolicy": {"gang": {"minCount": count}}, **priority}
                 for name, count in groups.items()]  # fmt: skip
    owner = gang.owner
    workload_spec: dict[str, Any] = {
        "controllerRef": {
            "apiGroup": owner["apiVersion"].split("/")[0],
            "kind": owner["kind"],
            "name": gang.name,
        },
    }
    if members:
        workload_spec["compositePodGroupTemplates"] = [
            {
                "name": COMPOSITE,
                "schedulingPolicy": {"gang": {"minGroupCount": len(groups)}},
                "podGroupTemplates": templates,
                **priority,
            }
        ]
    else:
        workload_spec["podGroupTemplates"] = templates
    out: list[Manifest] = [
        {"apiVersion": NATIVE, "kind": "Workload", "metadata": {"name": job}, "spec": workload_spec}
    ]
    if members:
        composite = {"workloadRef": {"workloadName": job, "templateName": COMPOSITE},
                     "schedulingPolicy": {"gang": {"minGroupCount": len(groups)}}, **priority}  # fmt: skip
        out.append({"apiVersion": NATIVE_COMPOSITE, "kind": "CompositePodGroup", "metadata": {"name": job},
                    "spec": composite})  # fmt: skip
    for name, count in groups.items():
        spec: dict[str, Any] = {
            "schedulingPolicy": {"gang": {"minCount": count}},
            "workloadRef": {"workloadName": job, "templateName": name},
            **priority,
        }
        if members:
            spec["parentCompositePodGroupName"] = job
        group_name = job if name == WORKERS else f"{job}-{name}"
        out.append({"apiVersion": NATIVE, "kind": "PodGroup", "metadata": {"name": group_name}, "spec": spec})
    for manifest in out:  # created before the Job and deleted with it (kube.converge)
        manifest["metadata"]["annotations"] = {COMPANION_OF: job}
    return [owned(owner, m, gang.component) for m in out]


def worker_job(gang: Gang) -> Manifest:
    topo, sched = gang.topology, gang.scheduling
    labels = {"app.kubernetes.io/component": gang.component, ATTEMPT: str(gang.attempt)}
    pod_labels, pod_annotations = {**owner_labels(gang.owner), **labels}, {}
    if sched.gang == "coscheduling":
        pod_labels[COSCHEDULING_LABEL] = gang.job
    elif sched.gang == "volcano":
        pod_annotations[VOLCANO_ANNOTATION] = gang.job
    job_labels = {QUEUE_LABEL: str(sched.queue_name)} if sched.gang == "kueue" else {}
    pod_security, container_security = restricted_security()
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # the operator restarts the whole group, never one pod
        "subdomain": gang.service,
        "automountServiceAccountToken": False,  # trainers report through /metrics, not the API
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "securityContext": pod_security,
        "containers": [
            {
                "name": gang.component,
                "image": topo.image,
                "imagePullPolicy": topo.image_pull_policy,
                "command": [*SUPERVISOR, *torchrun(gang)] if gang.supervised else torchrun(gang),
                "env": environment(gang),
                "ports": [{"name": n, "containerPort": p} for n, p in sorted(container_ports(gang).items())],
                "resources": resources(topo),
                "volumeMounts": [m for _, m in volumes(gang)],
                "securityContext": container_security,
                # A crash with no message of its own reports the tail of its log instead.
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": [v for v, _ in volumes(gang)],
    }
    optional = {
        "nodeSelector": topo.node_selector or None,
        "tolerations": [t.model_dump(by_alias=True, exclude_none=True) for t in topo.tolerations] or None,
        "serviceAccountName": topo.service_account_name,
        "priorityClassName": sched.priority_class_name,
        "schedulerName": sched.scheduler_name or DEFAULT_SCHEDULER.get(sched.gang),
    }
    pod_spec.update({k: v for k, v in optional.items() if v})
    if gang.supervised:  # a failed program turns the pod not-ready within a second: the operator looks
        probe = {
            "httpGet": {"path": "/ready", "port": "supervisor"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        }
        pod_spec["containers"][0]["readinessProbe"] = probe
    if sched.gang == "kubernetes":
        pod_spec["schedulingGroup"] = {"podGroupName": gang.job}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": gang.job, "labels": {**labels, **job_labels}},
        "spec": {
            "completionMode": "Indexed",
            "completions": topo.nodes,
            "parallelism": topo.nodes,
            "backoffLimit": 0,  # one failed pod fails the attempt; restarts are whole-group
            # A pod that is evicted, preempted or loses its node fails the Job saying so (the pod may be
            # gone by the time the operator looks): the failure policy then restarts without counting.
            "podFailurePolicy": {
                "rules": [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]}]
            },
            # Kueue admits the workload by unsuspending the Job; otherwise it starts at once.
            "suspend": sched.gang == "kueue",
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }
    return owned(gang.owner, job, gang.component)


def container_ports(gang: Gang) -> dict[str, int]:
    supervisor = {"supervisor": SUPERVISOR_PORT} if gang.supervised else {}
    return {"rendezvous": MASTER_PORT, **supervisor, **gang.ports}


def torchrun(gang: Gang) -> list[str]:
    return [
        "torchrun",
        "--nnodes=$(NNODES)",
        "--nproc-per-node=$(NPROC_PER_NODE)",
        "--node-rank=$(NODE_RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        # On SIGTERM torchrun waits this long for its workers to save before killing them (default 30).
        f"--shutdown-timeout={GRACE_SECONDS - 15}",
        *gang.program,
    ]


def environment(gang: Gang) -> list[dict[str, Any]]:
    topo = gang.topology
    env: list[dict[str, Any]] = [
        {"name": "NNODES", "value": str(topo.nodes)},
        {"name": "NPROC_PER_NODE", "value": str(max(topo.gpus_per_node, 1))},  # 0 GPUs: one CPU rank
        {
            "name": "NODE_RANK",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}},
        },
        {"name": "MASTER_ADDR", "value": gang.master_addr},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "VLMOP_ATTEMPT", "value": str(gang.attempt)},
    ]
    env += [{"name": k, "value": v} for k, v in sorted(gang.env.items())]
    return env + environment_from(topo.env)


def environment_from(variables: list[EnvVar]) -> list[dict[str, Any]]:
    """The spec's extra variables; secrets only by reference."""
    env: list[dict[str, Any]] = []
    for var in variables:
        if var.secret_key_ref:
            ref = var.secret_key_ref
            selector = {"name": ref.name, "key": ref.key, "optional": ref.optional}
            env.append({"name": var.name, "valueFrom": {"secretKeyRef": selector}})
        else:
            env.append({"name": var.name, "value": var.value or ""})
    return env


def resources(topo: Topology) -> dict[str, Any]:
    # Quantities are strings on the wire (the API server would turn 4 into "4" anyway).
    requests = {k: str(v) for k, v in topo.resources.requests.items()}
    limits = {k: str(v) for k, v in topo.resources.limits.items()}
    if topo.gpus_per_node:
        limits[topo.gpu_resource_name] = str(topo.gpus_per_node)
    return {k: v for k, v in {"requests": requests, "limits": limits}.items() if v}


def volumes(gang: Gang) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(volume, mount) pairs: config, shared memory for the collectives, the kind's claims, extras."""
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    if gang.config_map:
        pairs.append(
            (
                {"name": "config", "configMap": {"name": gang.config_map}},
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            )
        )
    pairs.append(
        (
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108 - the collectives' shared memory
        )
    )
    for vol in [*gang.mounts, *gang.topology.volumes]:
        pairs.append(
            (
                {"name": vol.name, "persistentVolumeClaim": {"claimName": vol.claim_name}},
                {"name": vol.name, "mountPath": vol.mount_path, "readOnly": vol.read_only},
            )
        )
    return pairs
