"""PRETRAINJOB handlers: thin — read the object, reconcile, write status."""

from typing import Any

import kopf

from vlmop.operator.api import GROUP, VERSION
from vlmop.operator.api import PRETRAINJOB as KIND
from vlmop.operator.reconcile import accept


@kopf.on.resume(GROUP, VERSION, KIND.plural)
@kopf.on.create(GROUP, VERSION, KIND.plural)
@kopf.on.update(GROUP, VERSION, KIND.plural)
def reconcile(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    accept(KIND, body, patch, logger)
