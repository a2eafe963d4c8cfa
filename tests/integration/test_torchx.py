"""torchx on vlmop: the `vlmop` scheduler submits torchx's own `dist.torchrun` AppDef as a PretrainJob
to the local API server, the real operator gangs it, the local kubelet runs its workers as processes,
and torchx's status, log, list, cancel and delete read and act on it. The `vlmop.pretrain` component
trains the tiny preset under torchx's `local_cwd` scheduler."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from torchx.components.dist import torchrun
from torchx.specs import AppState

from vlmop.integrations.torchx.scheduler import VlmopScheduler, create_scheduler
from vlmop.operator.localapi.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import os, sys, time
print(f"hello from node {os.environ['NODE_RANK']} rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}")
print("deepspeed config:", os.environ["VLMOP_DEEPSPEED_CONFIG"], flush=True)
time.sleep(float(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("torchx"), ["--resync-seconds", "0.5"]) as cluster:
        cluster.start_operator()
        cluster.start_kubelet()
        yield cluster


@pytest.fixture
def scheduler(local: LocalCluster) -> VlmopScheduler:
    return create_scheduler("test", client=local.client)


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "worker.py"
    path.write_text(textwrap.dedent(WORKER))
    return str(path)


def wait_state(local: LocalCluster, scheduler: VlmopScheduler, app_id: str, state: AppState) -> None:
    seen: list[object] = []

    def reached() -> bool:
        described = scheduler.describe(app_id)
        seen.append(described and described.state)
        return described is not None and described.state == state

    local.wait(reached, 120, f"{app_id} to be {state} (seen {seen[-1:]})")


def test_a_torchrun_app_runs_as_a_pretrainjob(
    local: LocalCluster, scheduler: VlmopScheduler, script: str
) -> None:
    app = torchrun("0", script=script, j="2x1", name="hello")
    app_id = scheduler.submit(app, {"namespace": "default"})
    namespace, name = app_id.split(":")
    assert namespace == "default" and name.startswith("hello-")
    assert any(item.app_id == app_id for item in scheduler.list({"namespace": "default"}))

    wait_state(local, scheduler, app_id, AppState.SUCCEEDED)
    described = scheduler.describe(app_id)
    assert described is not None and described.num_restarts == 0
    assert "all 2 workers completed" in described.msg
    (role,) = described.roles_statuses
    assert [(r.id, r.state) for r in role.replicas] == [(0, AppState.SUCCEEDED), (1, AppState.SUCCEEDED)]

    log = "".join(scheduler.log_iter(app_id, role.role, k=1))
    assert "hello from node 1 rank 1 of 2" in log
    assert "/ds_config.json" in log  # the ConfigMap's mount (the local kubelet maps it to a folder)
    assert list(scheduler.log_iter(app_id, role.role, k=1, regex="^hello")) == [
        "hello from node 1 rank 1 of 2\n"
    ]
    with pytest.raises(ValueError, match="no worker pod with node rank 5"):
        list(scheduler.log_iter(app_id, role.role, k=5))

    scheduler.delete(app_id)
    local.wait(lambda: scheduler.describe(app_id) is None, 30, f"{app_id} to be deleted")
    assert scheduler.describe(app_id) is None and not scheduler.exists(app_id)


def test_cancel_suspends_the_job_and_stops_its_workers(
    local: LocalCluster, scheduler: VlmopScheduler, script: str
) -> None:
    app_id = scheduler.submit(torchrun("300", script=script, j="2x1", name="sleeper"), {})
    wait_state(local, scheduler, app_id, AppState.RUNNING)
    scheduler.cancel(app_id)
    wait_state(local, scheduler, app_id, AppState.CANCELLED)
    local.wait(lambda: not local.kubelet.pods, 60, "the workers to stop")
    described = scheduler.describe(app_id)
    assert described is not None and "suspended" in described.msg
    scheduler.delete(app_id)


def test_the_pretrain_component_trains_under_local_cwd(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("TRITON_INTERPRET", None)
    command = [
        "torchx", "run", "-s", "local_cwd", "--wait", "--log", "vlmop.pretrain", "--preset", "tiny",
        "--data", str(ROOT / "examples" / "claims" / "pretrain-data" / "tokens"), "--seq_length", "64",
        "--total_steps", "4", "--checkpoint_interval", "2", "--checkpoint_dir", str(tmp_path / "ckpt"),
        "--metrics_port", "0",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "job finished: SUCCEEDED" in done.stderr + done.stdout, done.stderr[-3000:]
    assert (tmp_path / "ckpt" / "step-00000004" / "COMPLETE").exists()
