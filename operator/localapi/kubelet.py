"""A stand-in for the Job controller, the gang scheduler and the kubelet on one machine, so that
`vlmop local` really trains: every Indexed Job the operator creates gets its pods (owned by the Job,
with the completion-index annotation), and each pod's container command runs as a local process.

What a node would provide is mapped onto this machine: claims become directories (`<claims>/<name>`
when it exists, else one under the work directory), ConfigMap volumes are written out, mount paths in
the command and env are rewritten to those directories, `*.svc` names resolve to 127.0.0.1, each Job
gets its own rendezvous port, and `torchrun` is this Python's. Images, resources and security
contexts are not enforced: it is a local runner, not a sandbox. Deleting a Job stops its processes
(SIGTERM, then SIGKILL after the grace period) like a kubelet would."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kubernetes
import psutil
from kubernetes.client.exceptions import ApiException

from vlmop.operator import kube
from vlmop.operator.localapi.loopback import free_port

INDEX = "batch.kubernetes.io/job-completion-index"
SELECTOR = "app.kubernetes.io/managed-by=vlmop"
KEEP_ENV = ("PATH", "HOME", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "TMPDIR")


@dataclass
class LocalPod:
    name: str
    namespace: str
    job_uid: str
    process: subprocess.Popen[bytes]
    directory: Path
    stopping: float | None = None


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
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.batch = kubernetes.client.BatchV1Api(self.client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="local-kubelet", daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for name in list(self.pods):
            self.kill(name)

    def kill(self, pod: str) -> None:
        """SIGKILL every process of the pod, as the kernel does to a container's cgroup (an OOM kill,
        a lost node): torchrun starts its workers in sessions of their own, so the tree is walked."""
        process = self.pods[pod].process
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        process.wait()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.sync()
            except Exception as error:  # keep running; tests read .errors
                self.errors.append(f"{type(error).__name__}: {error}")

    def sync(self) -> None:
        jobs = {j["metadata"]["uid"]: j for j in self._list("/apis/batch/v1/jobs")}
        for uid, job in jobs.items():
            if uid not in self.started and not job["spec"].get("suspend"):
                self.started.add(uid)
                self._start_job(job)
        now = time.monotonic()
        for name, pod in list(self.pods.items()):
            if pod.job_uid not in jobs and pod.stopping is None:  # the Job was deleted
                pod.stopping = now  # SIGTERM to the container's first process; torchrun forwards it
                with contextlib.suppress(ProcessLookupError):
                    pod.process.send_signal(signal.SIGTERM)
            if pod.stopping is not None and now - pod.stopping > self.grace_seconds:
                self.kill(name)
            code = pod.process.poll()
            if code is not None:
                del self.pods[name]
                if pod.stopping is None:
                    self._report_exit(pod, code)

    def _list(self, path: str) -> list[dict[str, Any]]:
        selector = urllib.parse.quote(SELECTOR)
        return list(kube.request("GET", f"{path}?labelSelector={selector}", api=self.client)["items"])

    def _start_job(self, job: dict[str, Any]) -> None:
        spec, meta = job["spec"], job["metadata"]
        port = str(free_port())
        for index in range(int(spec.get("completions") or 1)):
            template = spec["template"]
            pod_name = f"{meta['name']}-{index}"
            annotations = {**(template["metadata"].get("annotations") or {}), INDEX: str(index)}
            owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"]}
            body = {
                "metadata": {
                    "name": pod_name,
                    "namespace": meta["namespace"],
                    "labels": template["metadata"].get("labels") or {},
                    "annotations": annotations,
                    "ownerReferences": [{**owner, "controller": True, "blockOwnerDeletion": True}],
                },
                "spec": template["spec"],
            }
            self.core.create_namespaced_pod(meta["namespace"], cast(Any, body))
            try:
                process, directory = self._run(body, port)
            except (OSError, LookupError, ValueError) as error:
                self._set_status(body, "Failed", 1, f"CreateContainerConfigError: {error}")
                continue
            self.pods[pod_name] = LocalPod(pod_name, meta["namespace"], meta["uid"], process, directory)
            self._set_status(body, "Running")

    def _run(self, pod: dict[str, Any], port: str) -> tuple[subprocess.Popen[bytes], Path]:
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        directory = self.logs / meta["name"]
        directory.mkdir(parents=True, exist_ok=True)
        mounts = self._mounts(meta["namespace"], spec, container, directory)
        env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
        for var in container.get("env") or []:
            value = self._env_value(meta, var)
            if value is not None:
                env[var["name"]] = _localise(_expand(value, env), mounts)
        env["MASTER_PORT"] = port  # one rendezvous port per Job: several jobs share this host
        env["VLMOP_TERMINATION_LOG"] = str(directory / "termination-log")
        command = [
            _localise(_expand(arg, env), mounts) for arg in container["command"] + container.get("args", [])
        ]
        if command[0] == "torchrun":
            command[:1] = [sys.executable, "-m", "torch.distributed.run"]
        log = (directory / "log").open("ab")
        process = subprocess.Popen(
            command, env=env, cwd=directory, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return process, directory

    def _mounts(
        self, namespace: str, spec: dict[str, Any], container: dict[str, Any], directory: Path
    ) -> dict[str, str]:
        """mountPath -> local directory for each volume mount."""
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        out = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                shared = self.claims / claim if self.claims else None
                local = shared if shared and shared.is_dir() else self.workdir / "claims" / claim
            else:
                local = directory / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                config = self.core.read_namespaced_config_map(volume["configMap"]["name"], namespace)
                for key, text in (config.data or {}).items():
                    (local / key).write_text(text)
            out[mount["mountPath"]] = str(local)
        return out

    def _env_value(self, meta: dict[str, Any], var: dict[str, Any]) -> str | None:
        if "value" in var:
            return str(var["value"])
        source = var.get("valueFrom") or {}
        if "fieldRef" in source:
            match = re.fullmatch(r"metadata\.annotations\['(.+)'\]", source["fieldRef"]["fieldPath"])
            if not match:
                raise ValueError(f"unsupported fieldRef {source['fieldRef']['fieldPath']}")
            return str(meta["annotations"][match.group(1)])
        ref = source["secretKeyRef"]
        try:
            secret = self.core.read_namespaced_secret(ref["name"], meta["namespace"])
            return base64.b64decode(str((secret.data or {})[ref["key"]])).decode()
        except (ApiException, KeyError) as error:
            if ref.get("optional"):
                return None
            raise LookupError(f"secret {ref['name']} key {ref['key']} not found") from error

    def _report_exit(self, pod: LocalPod, code: int) -> None:
        message_file = pod.directory / "termination-log"
        if message_file.is_file() and message_file.read_text().strip():
            message = message_file.read_text()
        elif code:  # terminationMessagePolicy: FallbackToLogsOnError
            message = "\n".join((pod.directory / "log").read_text(errors="replace").splitlines()[-20:])
        else:
            message = ""
        body = {"metadata": {"name": pod.name, "namespace": pod.namespace}}
        self._set_status(body, "Succeeded" if code == 0 else "Failed", code, message)

    def _set_status(
        self, pod: dict[str, Any], phase: str, code: int | None = None, message: str = ""
    ) -> None:
        status: dict[str, Any] = {"phase": phase, "podIP": "127.0.0.1"}
        if code is not None:
            terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "message": message,
            }
            status["containerStatuses"] = [
                {"name": "main", "image": "local", "imageID": "local", "ready": False, "restartCount": 0,
                 "state": {"terminated": terminated}}
            ]  # fmt: skip
        meta = pod["metadata"]
        with contextlib.suppress(ApiException):  # the pod may be gone with its Job
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, unknown ones left as written."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def _localise(value: str, mounts: dict[str, str]) -> str:
    """Rewrite in-pod paths under a mount to the local directory; `*.svc` hosts to loopback."""
    if value.endswith(".svc") and "/" not in value:
        return "127.0.0.1"
    for mount_path in sorted(mounts, key=len, reverse=True):
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return mounts[mount_path] + value[len(mount_path.rstrip("/")) :]
    return value
