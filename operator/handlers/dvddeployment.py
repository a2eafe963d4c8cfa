"""DvDDeployment handlers: thin — build the three pools (builders), converge them (kube), fold the
Deployments' readiness into one status (availability). Reconciles on spec changes and on the resync
timer, reading Deployments from the index (a converged tick makes no API call)."""

from __future__ import annotations

import datetime
from typing import Any

import kopf

from vlmop.operator import availability, kube, metrics
from vlmop.operator.api import DVDDEPLOYMENT as KIND
from vlmop.operator.api import GROUP, VERSION, DvDDeploymentSpec
from vlmop.operator.builders import dvddeployment as build
from vlmop.operator.builders import pool as pools
from vlmop.operator.handlers.pretrainjob import RESYNC_SECONDS
from vlmop.operator.reconcile import reject, spec_errors, write_status


@kopf.on.resume(GROUP, VERSION, KIND.plural)
@kopf.on.create(GROUP, VERSION, KIND.plural)
@kopf.on.update(GROUP, VERSION, KIND.plural)
@kopf.timer(GROUP, VERSION, KIND.plural, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)  # type: ignore[arg-type]
def reconcile(
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    children: kopf.Index[Any, kube.ChildRef],
    deployments: kopf.Index[Any, availability.DeploymentView],
    **_: Any,
) -> None:
    with metrics.reconciling(KIND.kind) as outcome:
        errors = spec_errors(KIND, body.get("spec") or {})
        if errors:
            outcome.result = "invalid"
            reject(KIND, body, patch, errors, logger)
            return
        spec = DvDDeploymentSpec.model_validate(dict(body["spec"]))
        namespace, name = str(body.metadata.namespace), str(body.metadata.name)
        key = (namespace, KIND.kind, name)
        writes = kube.converge(namespace, build.children(body, spec), children.get(key, []))
        metrics.CHILD_WRITES.labels(KIND.kind).inc(writes)
        seen = {d.component: d for d in deployments.get(key, [])}
        status = availability.decide(
            build.POOLS,
            seen,
            dict(body.get("status") or {}),
            body.metadata.get("generation"),
            pools.url(build.gateway_pool(body, spec)),
            datetime.datetime.now(datetime.UTC),
        )
        write_status(KIND, body, patch, status)
