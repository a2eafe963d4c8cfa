"""A stand-in for the Job and ReplicaSet controllers, kube-proxy, cluster DNS and the kubelet on one
machine, so that `vlmop local` runs every pod the operator's children imply: each Indexed Job gets its
pods (the completion-index annotation, run once), each Deployment its replicas (rolled out surge-first
by its strategy, restarted with back-off when they exit, probed by the probes they declare), and each
pod's container runs as a local process group.

What a node would provide is mapped onto this machine: every pod has a loopback address of its own
(its 0.0.0.0 is that address: podsite/sitecustomize.py), Services resolve and proxy to the ready pods
(services.py), claims become directories (`<claims>/<name>` when it exists, else one under the work
directory), ConfigMap volumes are written out, hostPath volumes are the host's folders, mount paths in
the command and env are rewritten to those directories, each Job gets its own rendezvous port, and
`torchrun`, `python` and `vllm serve` are this machine's (vLLM's CPU venv: engines.py). Images,
resources, security contexts and NetworkPolicies are not enforced: it is a local runner, not a sandbox.
Deleting a pod or its owner stops its processes (SIGTERM, then SIGKILL after the grace period)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kubernetes
import psutil
from kubernetes.client.exceptions import ApiException

from vlmop.operator import kube
from vlmop.operator.localapi import engines, services
from vlmop.operator.localapi.loopback import free_port
from vlmop.operator.localapi.podsite import RUN, resolver
from vlmop.operator.localapi.probes import Prober
from vlmop.operator.localapi.replicasets import TEMPLATE_HASH, Replica, rollout, strategy, template_hash

INDEX = "batch.kubernetes.io/job-completion-index"
KEEP_ENV = ("PATH", "HOME", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "TMPDIR")
OWNERS = {"Job": "batch/v1", "Deployment": "apps/v1"}  # list items carry no apiVersion or kind
BACKOFF = (10.0, 300.0)
GROUPS = (
    Path(tempfile.gettempdir()) / f"vlmop-local-{os.getuid()}.groups"
)  # "<run pid> <pod pgid>" lines  # a crashing container waits 10 s, 20 s, ... up to 5 min, as a kubelet does


@dataclass
class LocalPod:
    name: str
    namespace: str
    owner_uid: str  # the Job's or the Deployment's
    body: dict[str, Any]  # metadata and spec, as created
    ip: str
    directory: Path
    always: bool  # a Deployment's pod: restarted when it exits
    template_hash: str = ""
    port: str = ""  # the Job's rendezvous port
    process: subprocess.Popen[bytes] | None = None
    prober: Prober | None = None
    restarts: int = 0
    next_start: float = 0.0
    last_exit: dict[str, Any] | None = None
    stopping: float | None = None
    signalled: bool = False  # SIGTERM sent (after the Services stopped sending it connections)
    written: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        return bool(self.process and self.process.poll() is None and self.prober and self.prober.ready)


@dataclass
class LocalKubelet:
    client: kubernetes.client.ApiClient
    workdir: Path
    claims: Path | None = None
    grace_seconds: float = 20.0
    pods: dict[str, LocalPod] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)  # uids of Jobs whose pods exist

    def __post_init__(self) -> None:
        self.claims = self.claims.resolve() if self.claims else None  # pods run in their own folders
        self.logs = self.workdir / "pods"  # <pod>/log: what the API server answers for pods/<pod>/log
        self.hosts_file = self.workdir / "hosts.json"
        self.targets_file = self.workdir / "scrape-targets.json"  # for a local Prometheus (file_sd)
        self.targets = ""  # what the file holds
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.apps = kubernetes.client.AppsV1Api(self.client)
        self.addresses = services.Addresses()
        self.cluster_ips: dict[str, str] = {}  # Service uid -> its proxy's address
        self.proxies = services.Proxies(self.hosts_file)
        self.deployment_status: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="local-kubelet", daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for pod in list(self.pods.values()):
            self._terminate(pod)
        self._signal_stopping()
        deadline = time.monotonic() + self.grace_seconds
        for pod in list(self.pods.values()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                if pod.process:
                    pod.process.wait(max(0.0, deadline - time.monotonic()))
            self.kill(pod.name)
        self.proxies.stop()

    def kill(self, pod: str) -> None:
        """SIGKILL every process of the pod, as the kernel does to a container's cgroup (an OOM kill,
        a lost node): its process group (where children whose parent has exited still are, e.g. vLLM's
        engine core), and the tree, for torchrun starts its workers in sessions of their own."""
        local = self.pods[pod]
        if local.prober:
            local.prober.stop()
        process = local.process
        if process is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def crash(self, pod: str, module: str) -> int:
        """SIGKILL the pod's process that runs `python -m <module>` (a trainer dying inside a container
        that lives on, e.g. torchrun's worker); returns its pid."""
        process = self.pods[pod].process
        assert process is not None, f"{pod} runs nothing"
        (found,) = [
            c for c in psutil.Process(process.pid).children(recursive=True) if _runs(c.cmdline(), module)
        ]
        found.kill()
        return int(found.pid)

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self.sync()
            except Exception as error:  # keep running; tests read .errors
                self.errors.append(f"{type(error).__name__}: {error}")

    def sync(self) -> None:
        jobs = {j["metadata"]["uid"]: j for j in self._list("/apis/batch/v1/jobs")}
        deployments = {d["metadata"]["uid"]: d for d in self._list("/apis/apps/v1/deployments")}
        for uid, job in jobs.items():
            if uid not in self.started and not job["spec"].get("suspend"):
                self.started.add(uid)
                self._start_job(job)
        for deployment in deployments.values():
            self._replicas(deployment)
        existing = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in self._list("/api/v1/pods")}
        now, owners = time.monotonic(), jobs.keys() | deployments.keys()
        for pod in list(self.pods.values()):
            gone = pod.owner_uid not in owners or (pod.namespace, pod.name) not in existing
            if gone and pod.stopping is None:
                self._terminate(pod)
            if pod.stopping is None:
                self._tend(pod, now)
            elif (
                pod.process is None
                or pod.process.poll() is not None
                or now - pod.stopping > self.grace_seconds
            ):
                self.kill(pod.name)
                del self.pods[pod.name]
        for deployment in deployments.values():
            self._deployment_status(deployment)
        self._services()
        self._signal_stopping()

    def _list(self, path: str) -> list[dict[str, Any]]:
        return list(kube.request("GET", path, api=self.client)["items"])

    # ---- pods of Jobs and Deployments -----------------------------------------------------------

    def _start_job(self, job: dict[str, Any]) -> None:
        spec, meta = job["spec"], job["metadata"]
        port = str(free_port())
        for index in range(int(spec.get("completions") or 1)):
            self._create(job, "Job", f"{meta['name']}-{index}", {INDEX: str(index)}, {}, port=port)

    def _create(
        self, owner: dict[str, Any], kind: str, name: str, annotations: dict[str, str],
        labels: dict[str, str], port: str = "",
    ) -> None:  # fmt: skip
        meta, template = owner["metadata"], owner["spec"]["template"]
        ref = {"apiVersion": OWNERS[kind], "kind": kind, "name": meta["name"],
               "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}  # fmt: skip
        body = {
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": {**(template["metadata"].get("labels") or {}), **labels},
                "annotations": {**(template["metadata"].get("annotations") or {}), **annotations},
                "ownerReferences": [ref],
            },
            "spec": template["spec"],
        }
        self.core.create_namespaced_pod(meta["namespace"], cast(Any, body))
        pod = LocalPod(
            name, meta["namespace"], meta["uid"], body, self.addresses.take(), self.logs / name,
            always=kind == "Deployment", template_hash=labels.get(TEMPLATE_HASH, ""), port=port,
        )  # fmt: skip
        self.pods[name] = pod
        self._tend(pod, time.monotonic())

    def _replicas(self, deployment: dict[str, Any]) -> None:
        """The ReplicaSet controller's part: the pods of the current template up to `replicas`, the
        old ones retired as the strategy allows (no ReplicaSet objects are kept)."""
        meta, spec = deployment["metadata"], deployment["spec"]
        want, current = int(spec.get("replicas", 1)), template_hash(spec["template"])
        mine = [p for p in self.pods.values() if p.owner_uid == meta["uid"] and p.stopping is None]
        surge, unavailable = strategy(spec, want)
        replicas = [Replica(p.name, p.template_hash == current, p.ready) for p in mine]
        create, remove = rollout(want, surge, unavailable, replicas)
        for name in remove:
            self._delete(self.pods[name])
        for _ in range(create):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))  # noqa: S311
            self._create(
                deployment, "Deployment", f"{meta['name']}-{current}-{suffix}", {}, {TEMPLATE_HASH: current}
            )

    def _deployment_status(self, deployment: dict[str, Any]) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        mine = [p for p in self.pods.values() if p.owner_uid == meta["uid"] and p.stopping is None]
        want, ready = int(spec.get("replicas", 1)), sum(p.ready for p in mine)
        _, unavailable = strategy(spec, want)
        available = ready >= want - unavailable
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(mine),
            "updatedReplicas": sum(p.template_hash == template_hash(spec["template"]) for p in mine),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, want - ready),
            "conditions": [{"type": "Available", "status": str(available),
                            "reason": f"MinimumReplicas{'' if available else 'Un'}available"}],
        }  # fmt: skip
        if self.deployment_status.get(meta["uid"]) != status:
            with contextlib.suppress(ApiException):  # deleted meanwhile
                self.apps.patch_namespaced_deployment_status(
                    meta["name"], meta["namespace"], {"status": status}
                )
                self.deployment_status[meta["uid"]] = status

    def _delete(self, pod: LocalPod) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(pod.name, pod.namespace)
        self._terminate(pod)

    def _terminate(self, pod: LocalPod) -> None:
        """Marks the pod stopping: no longer an endpoint, SIGTERM once the proxies know (else a
        connection can still reach a dying pod), SIGKILL after the grace."""
        pod.stopping = time.monotonic()
        if pod.prober:
            pod.prober.stop()

    def _signal_stopping(self) -> None:
        """SIGTERM to each stopping pod's first process (torchrun forwards it), once."""
        for pod in self.pods.values():
            if pod.stopping is None or pod.signalled:
                continue
            pod.signalled = True
            if pod.process and pod.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    pod.process.send_signal(signal.SIGTERM)

    def _tend(self, pod: LocalPod, now: float) -> None:
        """Start (or restart after the back-off), notice exits and failed probes, write the status."""
        exited: tuple[int, str] | None = None
        if pod.process is None and now >= pod.next_start:
            try:
                self._run(pod)
            except (OSError, LookupError, ValueError) as error:
                exited = (1, f"CreateContainerConfigError: {error}")
        elif pod.process is not None:
            code, dead = pod.process.poll(), pod.prober.dead if pod.prober else ""
            if dead:
                self.kill(pod.name)
                code = pod.process.returncode
            if code is not None:
                exited = (code, self._exit_message(pod, code) or dead)
        if exited is not None:
            if not pod.always:  # a Job's pod runs once
                phase = "Succeeded" if exited[0] == 0 else "Failed"
                self._write(pod, {"phase": phase, **container_status(pod, terminated(*exited))})
                del self.pods[pod.name]
                return
            pod.restarts += 1
            pod.last_exit = terminated(*exited)
            pod.next_start = now + min(BACKOFF[0] * 2 ** (pod.restarts - 1), BACKOFF[1])
            pod.process = None
            if pod.prober:
                pod.prober.stop()
        if pod.process is None:
            message = (pod.last_exit or {}).get("terminated", {}).get("message", "")
            state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        else:
            state = {"running": {}}
        self._write(pod, {"phase": "Running", **container_status(pod, state)})

    def _write(self, pod: LocalPod, status: dict[str, Any]) -> None:
        status = {**status, "podIP": pod.ip, "podIPs": [{"ip": pod.ip}], "hostIP": "127.0.0.1"}
        status["conditions"] = [{"type": t, "status": str(pod.ready)} for t in ("Ready", "ContainersReady")]
        if status == pod.written:
            return
        with contextlib.suppress(ApiException):  # the pod may be gone with its owner
            self.core.patch_namespaced_pod_status(pod.name, pod.namespace, {"status": status})
            pod.written = status

    def _run(self, pod: LocalPod) -> None:
        meta, spec = pod.body["metadata"], pod.body["spec"]
        container = spec["containers"][0]
        pod.directory.mkdir(parents=True, exist_ok=True)
        mounts = self._mounts(meta["namespace"], spec, container, pod.directory)
        env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
        for var in container.get("env") or []:
            value = self._env_value(meta, var, pod.ip)
            if value is not None:
                env[var["name"]] = _localise(_expand(value, env), mounts)
        if pod.port:
            env["MASTER_PORT"] = pod.port  # one rendezvous port per Job: several jobs share this host
        env["VLMOP_TERMINATION_LOG"] = str(pod.directory / "termination-log")
        # Every pod shares this machine's cores: one math thread each unless the pod says otherwise
        # (each process would start one per core, and OpenMP threads spin while they wait).
        env.setdefault("OMP_NUM_THREADS", "1")
        env |= {**resolver(self.hosts_file), "VLMOP_POD_IP": pod.ip}
        command = [
            _localise(_expand(arg, env), mounts)
            for arg in container.get("command", []) + container.get("args", [])
        ]
        if not command:
            raise ValueError(f"container {container['name']} has no command: images are not run here")
        command, extra = executable(command)
        env = extra | env
        with (pod.directory / "log").open("ab") as log:
            pod.process = subprocess.Popen(
                command,
                env=env,
                cwd=pod.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with GROUPS.open("a") as groups:  # for the next run's sweep, should this one be SIGKILLed
            groups.write(f"{os.getpid()} {pod.process.pid}\n")

        def exec_probe(argv: list[str], timeout: float) -> int:
            argv = [
                a.replace("://127.0.0.1:", f"://{pod.ip}:").replace("://localhost:", f"://{pod.ip}:")
                for a in argv
            ]
            return subprocess.run(executable(argv)[0], env=env, cwd=pod.directory, capture_output=True,
                                  timeout=timeout, check=False).returncode  # fmt: skip

        pod.prober = Prober(container, pod.ip, exec_probe)

    def claim_folder(self, claim: str) -> Path:
        """Where a claim is mounted: <claims>/<name> when it exists, else the run's own folder."""
        shared = self.claims / claim if self.claims else None
        return shared if shared and shared.is_dir() else self.workdir / "claims" / claim

    def _mounts(
        self, namespace: str, spec: dict[str, Any], container: dict[str, Any], directory: Path
    ) -> dict[str, str]:
        """mountPath -> local directory for each volume mount."""
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        out = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                local = self.claim_folder(volume["persistentVolumeClaim"]["claimName"])
            elif "hostPath" in volume:
                local = Path(volume["hostPath"]["path"])
            else:
                local = directory / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                config = self.core.read_namespaced_config_map(volume["configMap"]["name"], namespace)
                for key, text in (config.data or {}).items():
                    (local / key).write_text(text)
            out[mount["mountPath"]] = str(local)
        return out

    def _env_value(self, meta: dict[str, Any], var: dict[str, Any], ip: str) -> str | None:
        if "value" in var:
            return str(var["value"])
        source = var.get("valueFrom") or {}
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            fields = {
                "status.podIP": ip,
                "metadata.name": str(meta["name"]),
                "metadata.namespace": str(meta["namespace"]),
            }
            match = re.fullmatch(r"metadata\.annotations\['(.+)'\]", path)
            if match:
                return str(meta["annotations"][match.group(1)])
            if path not in fields:
                raise ValueError(f"unsupported fieldRef {path}")
            return fields[path]
        ref = source["secretKeyRef"]
        try:
            secret = self.core.read_namespaced_secret(ref["name"], meta["namespace"])
            return base64.b64decode(str((secret.data or {})[ref["key"]])).decode()
        except (ApiException, KeyError) as error:
            if ref.get("optional"):
                return None
            raise LookupError(f"secret {ref['name']} key {ref['key']} not found") from error

    @staticmethod
    def _exit_message(pod: LocalPod, code: int) -> str:
        message_file = pod.directory / "termination-log"
        if message_file.is_file() and message_file.read_text().strip():
            return message_file.read_text()
        if code:  # terminationMessagePolicy: FallbackToLogsOnError
            return "\n".join((pod.directory / "log").read_text(errors="replace").splitlines()[-20:])
        return ""

    # ---- Services -----------------------------------------------------------------------------

    def _services(self) -> None:
        listed = self._list("/api/v1/services")
        for svc in listed:
            uid, spec = svc["metadata"]["uid"], svc["spec"]
            if spec.get("clusterIP") == "None" or uid in self.cluster_ips:
                continue
            self.cluster_ips[uid] = self.addresses.take()  # allocated once, as the API server does
            with contextlib.suppress(ApiException):
                name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
                self.core.patch_namespaced_service(
                    name, namespace, {"spec": {"clusterIP": self.cluster_ips[uid]}}
                )
        ready = [
            services.Endpoint(p.namespace, p.body["metadata"]["labels"], p.ip, p.body["spec"],
                              p.body["spec"].get("hostname") or p.name)
            for p in self.pods.values() if p.ready and p.stopping is None
        ]  # fmt: skip
        self.proxies.update(*services.resolve(listed, ready, self.cluster_ips))
        self.errors += self.proxies.errors
        self.proxies.errors.clear()
        targets = [{"targets": [f"{e.ip}:{port['containerPort']}"],
                    "labels": {"namespace": e.namespace, "pod": name, "container": c["name"]}}
                   for name, e in ((p.name, p) for p in ready_pods(self.pods))
                   for c in e.body["spec"]["containers"] for port in c.get("ports") or []
                   if port.get("name") in ("http", "metrics")]  # fmt: skip
        text = json.dumps(targets, indent=1)
        if text != self.targets:  # written on change only: Prometheus re-reads it
            self.targets = text
            partial = self.targets_file.with_suffix(".partial")
            partial.write_text(text)
            os.replace(partial, self.targets_file)


def sweep() -> int:
    """Kill what an earlier run left behind (it was SIGKILLed: nothing stopped its pods): the process
    groups of its pods and the processes marked as its own. Returns how many groups and processes."""
    killed = 0
    live = []
    lines = GROUPS.read_text().split("\n") if GROUPS.exists() else []
    for run, group in (line.split() for line in lines if line.strip()):
        if psutil.pid_exists(int(run)):
            live.append(f"{run} {group}\n")
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(group), signal.SIGKILL)
            killed += 1
    GROUPS.write_text("".join(live))
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ValueError):
            run = process.environ().get(RUN)
            if run and not psutil.pid_exists(int(run)):
                process.kill()
                killed += 1
    return killed


def _runs(argv: list[str], module: str) -> bool:
    """Whether `argv` is a Python running `module` (its first -m, so not torchrun starting it)."""
    return "-m" in argv and argv[argv.index("-m") + 1 : argv.index("-m") + 2] == [module]


def ready_pods(pods: dict[str, LocalPod]) -> list[LocalPod]:
    return [p for p in pods.values() if p.ready and p.stopping is None]


def terminated(code: int, message: str) -> dict[str, Any]:
    return {
        "terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message}
    }


def container_status(pod: LocalPod, state: dict[str, Any]) -> dict[str, Any]:
    container = pod.body["spec"]["containers"][0]
    entry = {"name": container["name"], "image": container.get("image", "local"), "imageID": "local",
             "ready": pod.ready, "restartCount": pod.restarts, "started": "running" in state,
             "state": state}  # fmt: skip
    if pod.last_exit:
        entry["lastState"] = pod.last_exit
    return {"containerStatuses": [entry]}


def executable(command: list[str]) -> tuple[list[str], dict[str, str]]:
    """This machine's programs for the images' (and the environment they need here)."""
    if command[0] == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", *command[1:]], {}
    if command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]], {}
    if command[:2] == ["vllm", "serve"]:
        if not engines.installed():
            raise LookupError(f"vLLM is not installed here ({engines.vllm_python()}; see .ci/vllm-venv)")
        return [*engines.serve(), *command[2:]], dict(engines.CPU_ENV)
    return command, {}


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, unknown ones left as written."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def _localise(value: str, mounts: dict[str, str]) -> str:
    """Rewrite in-pod paths under a mount to the local directory (also as `--flag=PATH`); bare `*.svc`
    hosts (a rendezvous address, resolved by torch's C++ store, which the pods' resolver does not
    reach) to loopback."""
    if value.endswith(".svc") and "/" not in value:
        return "127.0.0.1"
    flag, equals, rest = value.partition("=")
    if equals and flag.startswith("-") and rest.startswith("/"):
        return f"{flag}={_localise(rest, mounts)}"
    for mount_path in sorted(mounts, key=len, reverse=True):
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return mounts[mount_path] + value[len(mount_path.rstrip("/")) :]
    return value
