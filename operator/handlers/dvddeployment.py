"""DvDDeployment reconcile: thin — run the autoscaler when due (mode operator), build the three pools
at the chosen sizes (builders), converge them (kube), fold the Deployments' readiness into one status
(availability). Run by the work queue on changes, and every resync while the operator autoscales it
(else the pools' events drive it), reading Deployments from the index (a converged round makes no API
call)."""

from __future__ import annotations

import datetime
import time
from typing import Any

import kopf

from vlmop.operator import availability, expectations, kube, metrics
from vlmop.operator.api import DVDDEPLOYMENT as KIND
from vlmop.operator.api import DvDDeploymentSpec
from vlmop.operator.autoscaler import evaluate
from vlmop.operator.builders import dvddeployment as build
from vlmop.operator.builders.autoscaling import SCALED
from vlmop.operator.lifecycle import QUIET_SECONDS
from vlmop.operator.reconcile import Written, write_status
from vlmop.operator.workqueue import QUEUE, SOONER, ObjectLogger, idle


@QUEUE.register(KIND)
def reconcile(
    body: kopf.Body,
    spec: DvDDeploymentSpec,
    logger: ObjectLogger,
    children: kopf.Index[Any, kube.ChildRef],
    deployments: kopf.Index[Any, availability.DeploymentView],
    memo: dict[str, Any],
    **_: Any,
) -> Written:
    namespace, name = str(body.metadata.namespace), str(body.metadata.name)
    key, now = (namespace, KIND.kind, name), datetime.datetime.now(datetime.UTC)
    seen = {d.component: d for d in deployments.get(key, [])}
    status, events = dict(body.get("status") or {}), []
    if spec.autoscaling.mode == "operator":
        state = memo.setdefault("autoscaler", evaluate.State())
        names = {p: build.pool_name(body, p) for p in SCALED}
        current = {p: seen[p].replicas for p in SCALED if p in seen}
        ready = {p: seen[p].ready for p in SCALED if p in seen}
        events = evaluate.run(
            spec, namespace, name, names, current, ready, status, state, time.monotonic(), now,
            wake=lambda: QUEUE.wake_threadsafe(key), sooner=lambda seconds: memo.__setitem__(SOONER, seconds),
        )  # fmt: skip
    desired, expected = build.children(body, spec, evaluate.desired(spec, status)), expectations.of(memo)
    try:
        writes = kube.converge(namespace, desired, children.get(key, []), expected=expected)
        metrics.CHILD_WRITES.labels(KIND.kind).inc(writes)
        if spec.autoscaling.mode != "operator":  # no autoscaler rounds: the pools' events drive it
            idle(memo, QUIET_SECONDS)
    except kube.MissingAPI as missing:  # KEDA not installed: said in status, rechecked later
        events.append(("Warning", "AutoscalerMissing", str(missing)))
    # Every child the children index or this operator's writes know of: the deployments index may
    # not show one yet, even where the children index does (two indexes, one event).
    indexed = {(c.kind, c.name) for c in children.get(key, [])}
    status = availability.decide(
        build.POOLS,
        availability.with_created(
            seen, desired, lambda kind, name: (kind, name) in indexed or expected.pending(kind, name)
        ),
        status,
        body.metadata.get("generation"),
        build.endpoint(body, spec),
        now,
    )
    for type_, reason, message in events:
        kube.event(body, type_, reason, message)
    return write_status(KIND, body, status)
