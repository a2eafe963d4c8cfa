"""`vlmop local`: the whole thing on this machine, no cluster needed. Starts the API server on
loopback, installs the CRDs, runs the real operator process and a local kubelet (every pod the
operator's children imply runs as local processes: localapi/kubelet.py), applies the given CRs, and
follows them to their done state: jobs until they finish, a DvDDeployment until it is Ready, then it
sends the gateway a request with an image and prints the curl that does the same.

What the examples need beyond their own YAML is made here and said: claim folders (`claims/` beside
the files, else the run's folder), a tiny random InternVL where a DvDDeployment's model is missing,
the gateway's API key Secret, a Prometheus (Debian's package, when installed) that scrapes the local
pods for the operator's autoscaler, and vLLM where its venv is installed (else the pools run vlmop's
stand-in engine)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import secrets
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, cast

import yaml
from kubernetes.client.exceptions import ApiException

from vlmop.operator.api import KINDS
from vlmop.operator.api.dvddeployment import DvDDeploymentSpec
from vlmop.operator.builders import dvddeployment as dvd
from vlmop.operator.localapi import engines, monitoring
from vlmop.operator.localapi.cluster import LocalCluster, kind_of
from vlmop.operator.localapi.kubelet import sweep

JOB_KINDS = ("PretrainJob", "CascadeRLJob")  # run to completion; the others until Ready
TERMINAL = ("Succeeded", "Failed")


def documents(paths: Iterable[Path]) -> list[dict[str, Any]]:
    files = [f for p in paths for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
    return [doc for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]


def claims_beside(paths: Iterable[Path]) -> Path | None:
    """examples/claims/<claim name>/ holds the sample data the examples mount: beside a folder given,
    or beside a file given."""
    folders = [p if p.is_dir() else p.parent for p in paths]
    return next((f / "claims" for f in folders if (f / "claims").is_dir()), None)


def summary(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    shown: dict[str, Any] = next(
        (conditions[t] for t in ("Failed", "Succeeded", "Progressing", "Ready") if t in conditions and (
            conditions[t]["status"] == "True" or t in ("Progressing", "Ready"))),
        {},
    )  # fmt: skip
    return (
        f"{obj['kind']:<14} {obj['metadata']['name']:<20} {status.get('phase', '-'):<10} "
        f"{progress(obj):<24} {loss(status):<12}"
        f"{shown.get('type', '-')}={shown.get('status', '-')} ({shown.get('reason', '-')}): "
        f"{shown.get('message', '')}"
    )


def progress(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    if obj["kind"] == "DvDDeployment":
        return " ".join(
            f"{p}={(status.get(p) or {}).get('readyReplicas', 0)}/{(status.get(p) or {}).get('replicas', 0)}"
            for p in ("vision", "language", "gateway")
        )
    return str(status.get("progress") or "")  # a CascadeRLJob's names its stage


def loss(status: dict[str, Any]) -> str:
    return f"loss={status['loss']:.3f}" if isinstance(status.get("loss"), float) else ""


def done(obj: dict[str, Any]) -> bool:
    phase = (obj.get("status") or {}).get("phase")
    return phase in TERMINAL if obj["kind"] in JOB_KINDS else phase in ("Ready", "Failed")


def succeeded(obj: dict[str, Any]) -> bool:
    return (obj.get("status") or {}).get("phase") == ("Succeeded" if obj["kind"] in JOB_KINDS else "Ready")


def follow(cluster: LocalCluster, docs: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Print each resource's line whenever it changes, until every one is done (or the time is up)."""
    deadline, last = time.monotonic() + timeout, dict[str, str]()
    while True:
        objs = [cluster.get(kind_of(d), d["metadata"]["name"]) for d in docs]
        for obj in objs:
            line = summary(obj)
            if last.get(obj["metadata"]["name"]) != line:
                print(line, flush=True)
                last[obj["metadata"]["name"]] = line
        if all(done(o) for o in objs) or time.monotonic() > deadline:
            return objs
        time.sleep(1)


def prepare(cluster: LocalCluster, docs: list[dict[str, Any]], claims: Path | None) -> dict[str, str]:
    """Make what the CRs refer to and this machine lacks; returns API keys by DvDDeployment."""
    if not engines.installed():
        print(f"vLLM is not installed ({engines.vllm_python()}; `bash .ci/vllm-venv` installs it): the "
              "rollout and language pools run vlmop's stand-in engine (engine: vlmop)")  # fmt: skip
        for doc in docs:
            switch_engine(doc)
    elif any(d["kind"] in ("CascadeRLJob", "DvDDeployment") for d in docs):
        print(f"rollout and language pools on vLLM ({engines.vllm_python()})")
    keys = {}
    for doc in docs:
        if doc["kind"] != "DvDDeployment":
            continue
        spec = DvDDeploymentSpec.model_validate(doc["spec"])
        for volume in dvd.model_mounts(spec):
            inside = Path(spec.model).relative_to(volume.mount_path)
            folder = cluster.kubelet.claim_folder(volume.claim_name) / inside
            if not (folder / "config.json").is_file():
                from vlmop.workloads.serving.model import save_tiny

                save_tiny(folder)
                print(f"{doc['metadata']['name']}: {spec.model} is empty: a tiny random InternVL in {folder}")
        ref = spec.gateway.auth_secret_ref
        if ref:
            keys[doc["metadata"]["name"]] = gateway_key(cluster, ref.name, ref.key)
    if any(d["kind"] == "DvDDeployment" for d in docs):
        if shutil.which("prometheus"):
            monitoring.install(cluster, cluster.kubelet.targets_file)
            print(
                f"Prometheus scrapes the local pods: http://{monitoring.SERVICE}.{monitoring.NAMESPACE}:9090"
            )
        else:
            print("Prometheus is not installed (apt-get install prometheus): the autoscaler holds the pools")
    return keys


def gateway_key(cluster: LocalCluster, name: str, key: str) -> str:
    """The gateway's API key: a new Secret with a random one, or the one already there."""
    token = secrets.token_urlsafe(16)
    secret = {"metadata": {"name": name}, "data": {key: base64.b64encode(token.encode()).decode()}}
    try:
        cluster.core.create_namespaced_secret("default", cast(Any, secret))
    except ApiException as error:
        if error.status != 409:
            raise
        found = cluster.core.read_namespaced_secret(name, "default").data or {}
        return base64.b64decode(found[key]).decode()
    return token


def switch_engine(doc: dict[str, Any]) -> None:
    spec = doc.get("spec") or {}
    for stage in spec.get("stages") or []:
        if stage.get("rollout"):
            stage["rollout"]["engine"] = "vlmop"
    if doc["kind"] == "DvDDeployment":
        spec.setdefault("language", {})["engine"] = "vlmop"


def try_gateway(cluster: LocalCluster, obj: dict[str, Any], key: str | None) -> bool:
    """A chat request with an image through the gateway's Service; prints the answer and the curl."""
    spec = DvDDeploymentSpec.model_validate(obj["spec"])
    service = cluster.core.read_namespaced_service(
        dvd.pool_name(obj, "gateway"), obj["metadata"]["namespace"]
    )
    url = f"http://{cast(Any, service.spec).cluster_ip}:{spec.gateway.port}/v1/chat/completions"
    request = cluster.workdir / "request.json"
    request.write_text(json.dumps(chat_request(), indent=1))
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    print(f"gateway: {url}")
    print("try: curl " + " ".join(f"-H '{k}: {v}'" for k, v in headers.items()) + f" -d @{request} {url}")
    try:
        post = urllib.request.Request(url, data=request.read_bytes(), headers=headers)
        with urllib.request.urlopen(post, timeout=120) as reply:  # noqa: S310 - the local gateway
            answer = json.loads(reply.read())["choices"][0]["message"]["content"]
    except (OSError, ValueError, KeyError, IndexError) as error:
        print(f"the gateway did not answer: {error}")
        return False
    print(f"it answers (a random tiny model's words): {answer!r}")
    return True


def autoscaler(cluster: LocalCluster, obj: dict[str, Any], timeout: float = 90) -> str:
    """The operator's autoscaling decisions in the status, once a round has had a metric (or why not)."""
    spec, name = DvDDeploymentSpec.model_validate(obj["spec"]), obj["metadata"]["name"]
    if spec.autoscaling.mode != "operator":
        return f"{name}: autoscaling by {spec.autoscaling.mode}"
    deadline, info = time.monotonic() + timeout, kind_of(obj)
    while True:
        status = cluster.get(info, name).get("status") or {}
        rows = {p: status.get(p) or {} for p in ("vision", "language")}
        if all("metricValue" in r for r in rows.values()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    shown = ", ".join(
        f"{p} {r.get('desiredReplicas', '-')} replicas ({r.get('reason', 'no round yet')}"
        + (f", utilisation {r['metricValue']:.2f})" if "metricValue" in r else ")")
        for p, r in rows.items()
    )
    return f"{name}: autoscaler on {spec.autoscaling.prometheus_url}: {shown}"


def chat_request() -> dict[str, Any]:
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (448, 448), (200, 120, 40)).save(png, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    content = [
        {"type": "image_url", "image_url": {"url": image}},
        {"type": "text", "text": "What colour is it?"},
    ]
    return {"model": "vlm", "messages": [{"role": "user", "content": content}], "max_tokens": 16}


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C: everything it started stops (the `with` blocks unwind)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(paths: Iterable[Path], serve: bool = False, timeout: float = 900, claims: Path | None = None) -> int:
    """Returns the exit code: 1 when a resource failed or was not done in time, 130 when interrupted."""
    paths = list(paths) or [Path("examples")]
    claims = claims or claims_beside(paths)
    docs = documents(paths)
    unknown = [d.get("kind") for d in docs if d.get("kind") not in {k.kind for k in KINDS}]
    if unknown:
        print(f"not vlmop resources: {unknown}", file=sys.stderr)
        return 2
    left = sweep()
    if left:
        print(f"stopped {left} processes an earlier `vlmop local` left running")
    try:
        with (
            stopped_by_signals(),
            LocalCluster(operator_args=["--resync-seconds", "2"], claims=claims) as cluster,
        ):
            return run(cluster, docs, claims, serve, timeout)
    except KeyboardInterrupt:
        print("stopped: the operator and every local pod have exited", file=sys.stderr)
        return 130


def run(
    cluster: LocalCluster, docs: list[dict[str, Any]], claims: Path | None, serve: bool, timeout: float
) -> int:
    cluster.start_operator()
    cluster.start_kubelet()
    print(f"API server {cluster.server.url}; operator log {cluster.log_path}")
    print(f"pods run in {cluster.workdir}/pods (a local runner, not a sandbox); claims in "
          f"{claims or cluster.workdir / 'claims'}")  # fmt: skip
    keys = prepare(cluster, docs, claims)
    for doc in docs:
        cluster.apply(doc)
    objs = follow(cluster, docs, timeout)
    ok = all(succeeded(o) for o in objs)
    for obj in objs:
        status = obj.get("status") or {}
        if obj["kind"] == "CascadeRLJob" and status.get("meanRewardBySource"):
            print(f"{obj['metadata']['name']}: mean reward by source {status['meanRewardBySource']}")
        for verifier, tally in (status.get("rewardsByVerifier") or {}).items():
            print(f"  verifier {verifier}: " + ", ".join(f"{k} {v}" for k, v in tally.items()))
        if obj["kind"] == "DvDDeployment" and succeeded(obj):
            ok &= try_gateway(cluster, obj, keys.get(obj["metadata"]["name"]))
            print(autoscaler(cluster, obj), flush=True)
    if serve:
        print(f"serving; try: KUBECONFIG={cluster.kubeconfig} kubectl get vlmop  (Ctrl-C stops)", flush=True)
        while True:
            time.sleep(3600)
    return 0 if ok else 1
