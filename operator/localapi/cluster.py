"""A local control plane: the API server on loopback, our CRDs installed through it, and the real
operator running as a separate process (`python -m vlmop.operator`) against it with a kubeconfig.
Used by `vlmop local` and by the integration tests' fixture."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import kubernetes

from vlmop.operator import crdgen
from vlmop.operator.api import GROUP, KINDS, VERSION, KindInfo
from vlmop.operator.localapi.loopback import free_port
from vlmop.operator.localapi.podsite import resolver
from vlmop.operator.localapi.runner import BackgroundAPIServer


def kind_of(doc: dict[str, Any]) -> KindInfo:
    for info in KINDS:
        if doc.get("kind") == info.kind and doc.get("apiVersion") == f"{GROUP}/{VERSION}":
            return info
    raise ValueError(f"not a vlmop resource: {doc.get('apiVersion')}/{doc.get('kind')}")


def podgroup_crd(group: str, version: str, kind: str = "PodGroup") -> dict[str, Any]:
    """A schemaless PodGroup CRD, standing in for what Volcano or scheduler-plugins install (or, with
    another `kind`, for an API such as Kubernetes' own Workload that this server does not serve)."""
    singular = kind.lower()
    names = {"kind": kind, "plural": f"{singular}s", "singular": singular, "listKind": f"{kind}List"}
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{singular}s.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": names,
            "versions": [{"name": version, "served": True, "storage": True, "schema": schema}],
        },
    }


class LocalCluster:
    def __init__(
        self, workdir: Path | None = None, operator_args: Iterable[str] = (), claims: Path | None = None
    ) -> None:
        self.server = BackgroundAPIServer()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="vlmop-local-"))
        self.operator_args = list(operator_args)
        self.operator: subprocess.Popen[bytes] | None = None
        self.kubelet: Any = None
        self.claims = claims
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.log_path = self.workdir / "operator.log"

    def __enter__(self) -> LocalCluster:
        self.server.start()
        self.kubeconfig = self.server.write_kubeconfig(self.workdir / "kubeconfig")
        self.client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=self.server.url))
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)
        extensions = kubernetes.client.ApiextensionsV1Api(self.client)
        for info in KINDS:  # installed the way a user would: POSTing the generated CRDs
            extensions.create_custom_resource_definition(cast(Any, crdgen.crd(info)))
        return self

    def __exit__(self, *_: object) -> None:
        if self.kubelet:
            self.kubelet.stop()
        self.stop_operator()
        self.client.close()  # type: ignore[no-untyped-call]
        self.server.stop()

    def start_operator(self, timeout: float = 60, standalone: bool = True, verbose: bool = True) -> None:
        """`python -m vlmop.operator [--standalone] [--verbose]` against this API server; waits for
        liveness. Verbose (debug logs, for tests to show) unless asked otherwise (benchmarks: as
        deployed)."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **resolver(self.workdir / "hosts.json")}
        command = [
            sys.executable,
            "-m",
            "vlmop.operator",
            *(["--standalone"] if standalone else []),
            *(["--verbose"] if verbose else []),
            "--liveness",
            f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--metrics-port",
            str(self.metrics_port),
            *self.operator_args,
        ]
        with self.log_path.open("ab") as log:
            self.operator = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.wait(lambda: self._alive(), timeout, "the operator to report live")

    def start_kubelet(self) -> None:
        """Run the pods of the Jobs the operator creates as local processes (localapi/kubelet.py).
        One machine places a whole gang at once, so the PodGroup kinds are served as well."""
        from vlmop.operator.localapi.kubelet import LocalKubelet

        extensions = kubernetes.client.ApiextensionsV1Api(self.client)
        for group, version in (("scheduling.x-k8s.io", "v1alpha1"), ("scheduling.volcano.sh", "v1beta1")):
            extensions.create_custom_resource_definition(cast(Any, podgroup_crd(group, version)))
        self.kubelet = LocalKubelet(self.client, self.workdir, self.claims)
        self.server.api.pod_logs = self.kubelet.logs
        self.kubelet.start()

    def _alive(self) -> bool:
        assert self.operator is not None
        if self.operator.poll() is not None:
            raise RuntimeError(f"operator exited with {self.operator.returncode}: {self.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", self.liveness_port), timeout=1):
                return True
        except OSError:
            return False

    def stop_operator(self) -> None:
        if self.operator and self.operator.poll() is None:
            self.operator.terminate()
            try:
                self.operator.wait(20)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():  # no operator was started
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def apply(self, doc: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        info = kind_of(doc)
        return cast(
            dict[str, Any],
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, info.plural, doc),
        )

    def get(self, info: KindInfo, name: str, namespace: str = "default") -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, info.plural, name),
        )

    def exists(self, info: KindInfo, name: str, namespace: str = "default") -> bool:
        try:
            self.get(info, name, namespace)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def wait_observed(self, info: KindInfo, name: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until the operator has reconciled the current generation; return the object."""
        seen: dict[str, Any] = {}

        def observed() -> bool:
            seen.update(self.get(info, name))
            status = seen.get("status") or {}
            return bool(status.get("observedGeneration") == seen["metadata"]["generation"])

        self.wait(observed, timeout, f"{info.kind} {name} to be observed")
        return seen

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; operator log:\n{self.log_tail()}")
            time.sleep(0.1)
