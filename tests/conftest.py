"""Shared fixtures: the examples, and the local control plane (API server + the real operator)."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from vlmop.operator.localapi.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]

# Triton reads TRITON_INTERPRET when a kernel is defined (on import), so it is set before any test
# module loads: without a GPU the kernel tests run Triton's interpreter on CPU tensors.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def load_example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    return doc


@pytest.fixture
def examples() -> dict[str, dict[str, Any]]:
    return {p.stem: load_example(p.stem) for p in sorted((ROOT / "examples").glob("*.yaml"))}


@pytest.fixture
def worker_command() -> Callable[[dict[str, Any]], tuple[argparse.Namespace | None, argparse.Namespace]]:
    """A gang worker container's command, its $(VAR)s expanded from its env as the kubelet does (one
    from a fieldRef: 0), read by the programs that read it: the supervisor's parser (when the command
    starts with it), then torchrun's (training_script, training_script_args: the program)."""
    from torch.distributed.run import get_args_parser

    from vlmop.workloads.common import supervisor

    def parse(container: dict[str, Any]) -> tuple[argparse.Namespace | None, argparse.Namespace]:
        env = {e["name"]: str(e.get("value", 0)) for e in container.get("env") or []}
        command = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["command"]]
        supervised = None
        if command[:3] == ["python", "-m", "vlmop.workloads.common.supervisor"]:
            supervised = supervisor.parser().parse_args(command[3:])
            command = supervisor.command_of(supervised)
        assert command[0] == "torchrun", command
        return supervised, get_args_parser().parse_args(command[1:])

    return parse


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The API server on loopback with our CRDs installed, no operator."""
    with LocalCluster(tmp_path_factory.mktemp("apiserver")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The API server plus the real operator process (`python -m vlmop.operator`) against it."""
    with LocalCluster(tmp_path_factory.mktemp("cluster"), ["--resync-seconds", "0.5"]) as cluster:
        cluster.start_operator()
        yield cluster
