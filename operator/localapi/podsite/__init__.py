"""The folder whose sitecustomize.py gives the processes `vlmop local` starts the cluster's names."""

from __future__ import annotations

import os
from pathlib import Path

PODSITE = Path(__file__).resolve().parent
RUN = "VLMOP_LOCAL_RUN"  # in every process a local run starts: the pid of the process that started it


def resolver(hosts_file: Path) -> dict[str, str]:
    """The environment that makes a process resolve Services as the local kubelet's pods do (and
    marks it as this run's: kubelet.sweep)."""
    path = os.pathsep.join([str(PODSITE), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PYTHONPATH": path, "VLMOP_LOCAL_HOSTS": str(hosts_file), RUN: str(os.getpid())}
