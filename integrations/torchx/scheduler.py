"""The `vlmop` torchx scheduler: `torchx run -s vlmop dist.ddp -j 2x8 --script train.py` creates a
PretrainJob; status, log, cancel, delete and list read and act on that CR and its worker pods.

App ids are `<namespace>:<name>` (as torchx's kubernetes scheduler). Cancel suspends the job (pods
stop, checkpoints and the CR stay: `kubectl patch ... suspend: false` resumes it); delete removes the
CR, its pods with it. The API client comes from the kubeconfig (or the in-cluster account) unless one
is passed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config, watch
from torchx.schedulers.api import (
    DescribeAppResponse,
    ListAppResponse,
    Scheduler,
    filter_regex,
    split_lines,
)
from torchx.specs import AppDef, AppDryRunInfo, AppState, CfgVal, ReplicaStatus, RoleStatus, runopts

from vlmop.integrations.torchx import appdef
from vlmop.integrations.torchx.appdef import Submission
from vlmop.operator.api import GROUP, PRETRAINJOB, VERSION

INDEX = "batch.kubernetes.io/job-completion-index"
ATTEMPT = "vlmop.io/attempt"


class VlmopScheduler(Scheduler[Submission]):
    def __init__(self, session_name: str, client: k8s.ApiClient | None = None) -> None:
        super().__init__("vlmop", session_name)
        self._client = client

    def _api(self) -> k8s.ApiClient:
        if self._client is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                self._client = k8s.ApiClient()
            except config.ConfigException:
                self._client = config.new_client_from_config()  # type: ignore[no-untyped-call]
        return self._client

    # The kubernetes client's hints do not cover dict bodies and replies: work with Any.
    def _custom(self) -> Any:
        return k8s.CustomObjectsApi(self._api())

    def _core(self) -> Any:
        return k8s.CoreV1Api(self._api())

    def _run_opts(self) -> runopts:
        return Submission.as_runopts()

    def _submit_dryrun(self, app: AppDef, cfg: Submission) -> AppDryRunInfo[dict[str, Any], Submission]:
        manifest = appdef.pretrainjob(app, cfg, appdef.job_name(app.name))
        return AppDryRunInfo(manifest, yaml.safe_dump)

    def schedule(self, dryrun_info: AppDryRunInfo[dict[str, Any], Submission]) -> str:
        manifest = dryrun_info.request
        namespace = manifest["metadata"]["namespace"]
        self._custom().create_namespaced_custom_object(
            GROUP, VERSION, namespace, PRETRAINJOB.plural, manifest
        )
        return f"{namespace}:{manifest['metadata']['name']}"

    def _get(self, app_id: str) -> dict[str, Any] | None:
        namespace, name = _split(app_id)
        try:
            job: dict[str, Any] = self._custom().get_namespaced_custom_object(
                GROUP, VERSION, namespace, PRETRAINJOB.plural, name
            )
        except k8s.ApiException as error:
            if error.status == 404:
                return None
            raise
        return job

    def _pods(self, job: dict[str, Any]) -> list[Any]:
        """The worker pods of the job's current attempt, by node rank."""
        meta = job["metadata"]
        attempt = int((job.get("status") or {}).get("restarts") or 0)
        selector = f"vlmop.io/owner-name={meta['name']},{ATTEMPT}={attempt}"
        pods = self._core().list_namespaced_pod(meta["namespace"], label_selector=selector)
        ranked = [p for p in pods.items if (p.metadata.annotations or {}).get(INDEX, "").isdigit()]
        return sorted(ranked, key=lambda p: int(p.metadata.annotations[INDEX]))

    def describe(self, app_id: str) -> DescribeAppResponse | None:
        job = self._get(app_id)
        if job is None:
            return None
        role = (job["metadata"].get("annotations") or {}).get("vlmop.io/torchx-role", "worker")
        replicas = [
            ReplicaStatus(
                id=int(pod.metadata.annotations[INDEX]),
                state=appdef.POD_TO_STATE.get(
                    (pod.status and pod.status.phase) or "Pending", AppState.UNKNOWN
                ),
                role=role,
                hostname=pod.metadata.name,
                hostaddr=pod.status and pod.status.pod_ip,
            )
            for pod in self._pods(job)
        ]
        status = job.get("status") or {}
        return DescribeAppResponse(
            app_id=app_id,
            state=appdef.app_state(job),
            num_restarts=int(status.get("restarts") or 0),
            msg=appdef.message(job),
            metadata={k: str(status[k]) for k in ("phase", "progress", "step", "loss") if k in status},
            roles_statuses=[RoleStatus(role, replicas)],
        )

    def list(self, cfg: Mapping[str, CfgVal] | None = None) -> list[ListAppResponse]:
        namespace = str((cfg or {}).get("namespace") or "default")
        jobs = self._custom().list_namespaced_custom_object(GROUP, VERSION, namespace, PRETRAINJOB.plural)
        out = []
        for job in jobs["items"]:
            app_id = f"{namespace}:{job['metadata']['name']}"
            handle = f"{self.backend}://{self.session_name}/{app_id}"
            out.append(ListAppResponse(app_id, appdef.app_state(job), handle, job["metadata"]["name"]))
        return out

    def _cancel_existing(self, app_id: str) -> None:
        namespace, name = _split(app_id)
        self._custom().patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PRETRAINJOB.plural, name, {"spec": {"runPolicy": {"suspend": True}}}
        )

    def _delete_existing(self, app_id: str) -> None:
        namespace, name = _split(app_id)
        self._custom().delete_namespaced_custom_object(GROUP, VERSION, namespace, PRETRAINJOB.plural, name)

    def log_iter(
        self,
        app_id: str,
        role_name: str,
        k: int = 0,
        regex: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        should_tail: bool = False,
        streams: Any = None,
    ) -> Iterable[str]:
        """The log of node rank `k` of the current attempt (its `trainer` container)."""
        job = self._get(app_id)
        pod = next(
            (p for p in (self._pods(job) if job else []) if p.metadata.annotations[INDEX] == str(k)), None
        )
        if pod is None:
            raise ValueError(f"{app_id} has no worker pod with node rank {k} in its current attempt")
        core = self._core()
        args: dict[str, Any] = {"name": pod.metadata.name, "namespace": pod.metadata.namespace}
        if since is not None:
            args["since_seconds"] = max(1, int((datetime.now() - since).total_seconds()))
        if should_tail:
            lines: Iterable[str] = (
                f"{line}\n"
                for line in watch.Watch().stream(  # type: ignore[no-untyped-call]
                    core.read_namespaced_pod_log, **args
                )
            )
        else:
            lines = split_lines(core.read_namespaced_pod_log(**args))
        return filter_regex(regex, lines) if regex else lines


def _split(app_id: str) -> tuple[str, str]:
    namespace, _, name = app_id.partition(":")
    if not name:
        raise ValueError(f"app id {app_id!r} is not <namespace>:<name>")
    return namespace, name


def create_scheduler(session_name: str, client: k8s.ApiClient | None = None, **_: Any) -> VlmopScheduler:
    return VlmopScheduler(session_name, client)
