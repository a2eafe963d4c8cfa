"""DvDDeployment handlers: thin — run the autoscaler when due (mode operator), build the three pools
at the chosen sizes (builders), converge them (kube), fold the Deployments' readiness into one status
(availability). Reconciles on spec changes and on the resync
timer, reading Deployments from the index (a converged tick makes no API call)."""

from __future__ import annotations

import datetime
import time
from typing import Any

import kopf

from vlmop.operator import availability, kube, metrics
from vlmop.operator.api import DVDDEPLOYMENT as KIND
from vlmop.operator.api import GROUP, VERSION, DvDDeploymentSpec
from vlmop.operator.autoscaler import evaluate
from vlmop.operator.builders import dvddeployment as build
from vlmop.operator.builders.autoscaling import SCALED
from vlmop.operator.reconcile import RESYNC_SECONDS, parse_spec, write_status


@kopf.on.resume(GROUP, VERSION, KIND.plural)
@kopf.on.create(GROUP, VERSION, KIND.plural)
@kopf.on.update(GROUP, VERSION, KIND.plural)
@kopf.timer(GROUP, VERSION, KIND.plural, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)  # type: ignore[arg-type]
def reconcile(
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    retry: int,
    children: kopf.Index[Any, kube.ChildRef],
    deployments: kopf.Index[Any, availability.DeploymentView],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    with metrics.reconciling(KIND.kind) as outcome, kube.retrying(retry):
        spec = parse_spec(KIND, DvDDeploymentSpec, body, patch, logger, outcome)
        if spec is None:
            return
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
                spec, namespace, names, current, ready, status, state, time.monotonic(), now
            )
        desired = build.children(body, spec, evaluate.desired(spec, status))
        try:
            writes = kube.converge(namespace, desired, children.get(key, []))
            metrics.CHILD_WRITES.labels(KIND.kind).inc(writes)
        except kube.MissingAPI as missing:  # KEDA not installed: said in status, rechecked later
            events.append(("Warning", "AutoscalerMissing", str(missing)))
        status = availability.decide(
            build.POOLS,
            seen,
            status,
            body.metadata.get("generation"),
            build.endpoint(body, spec),
            now,
        )
        for type_, reason, message in events:
            kopf.event(body, type=type_, reason=reason, message=message)
        write_status(KIND, body, patch, status)
