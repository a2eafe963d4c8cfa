"""Shared fixtures: the examples, and the local control plane (API server + the real operator)."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
