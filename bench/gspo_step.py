"""Where a GSPO step's time goes: rollout (sampling G answers per prompt from the rollout server, all
prompts in flight together), reward (the Mixture-of-Rewards), update (log-probs, loss, backward,
optimizer) and publish (weights to safetensors, the server loads them: one weight update). A rollout
server process plus the trainer under torchrun.

  python bench/gspo_step.py                                   # CPU: tiny preset, 2 ranks, letters
  python bench/gspo_step.py --task sorting --max-tokens 64 --group-size 16
  python bench/gspo_step.py --engine vllm --max-tokens 32     # vLLM rollouts, tiny InternVL checkpoint
  python bench/gspo_step.py --engine vlmop --internvl --max-tokens 32   # the stand-in on the same

--engine vllm starts vLLM's CPU server (.venv-vllm, operator/localapi/vllm_serve.py) on the tiny InternVL
checkpoint (`save_tiny`) as the operator does for `rollout.engine: vllm` (VLLM_SERVER_DEV_MODE=1 for
pause/reload/reset/resume); --internvl runs the stand-in server on that checkpoint too. Reports rank
0's mean seconds per phase over the steps after the first (warm-up), and the rollout share."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results

from vlmop.operator.builders import pool as pools
from vlmop.operator.localapi import engines
from vlmop.operator.localapi.loopback import free_port, wait_ready
from vlmop.workloads.serving.model import save_tiny

PHASES = ("rollout", "reward", "update", "publish")
ROOT = Path(__file__).resolve().parent.parent
VLLM_ENV = engines.CPU_ENV | {"VLLM_SERVER_DEV_MODE": "1"}


def first_completion(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """vLLM answers /health before its engine has served anything: the pool's own startup probe (one
    sampled token, operator/builders/pool.py) says when it serves."""
    wait_ready(f"{url}/health", server, log, 300)
    probe = pools.first_completion(int(url.rsplit(":", 1)[1]), "policy")
    subprocess.run([sys.executable, *probe[1:]], check=True, timeout=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--task", default="letters")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--prompts-per-rank", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--engine", choices=["vlmop", "vllm"], default="vlmop", help="the rollout server")
    p.add_argument("--internvl", action="store_true", help="the tiny InternVL checkpoint (vllm: always)")
    p.add_argument("--server-threads", type=int, default=1, help="OMP threads of the rollout server")
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"OMP_NUM_THREADS": "1"}
    internvl = args.internvl or args.engine == "vllm"
    with tempfile.TemporaryDirectory() as tmp:
        work, port = Path(tmp), free_port()
        (work / "weights").mkdir()
        model = ["--model-preset", args.preset]
        if internvl:
            model = ["--model-path", str(save_tiny(work / "model"))]
        if args.engine == "vllm":  # the operator's rollout pool command
            command = [*engines.serve(),
                       model[1], "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "policy",
                       "--tensor-parallel-size", "1", "--dtype", "auto"]  # fmt: skip
        else:
            command = [sys.executable, "-m", "vlmop.workloads.rl.rollout_server", *model, "--weights-dir",
                       str(work / "weights"), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        server_env = env | {"OMP_NUM_THREADS": str(args.server_threads)}
        server_env |= VLLM_ENV if args.engine == "vllm" else {}
        log = work / "server.log"
        server = subprocess.Popen(command, env=server_env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True, cwd=work)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            if args.engine == "vllm":
                first_completion(url, server, log)
            else:
                wait_ready(f"{url}/health", server, log)
            command = [
                sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={args.ranks}",
                "--master-port", str(free_port()), "-m", "vlmop.workloads.rl.gspo", "--rollout-url", url,
                "--rollout-engine", args.engine, "--weights-dir", str(work / "weights"), *model,
                "--task", args.task,
                "--group-size", str(args.group_size), "--max-tokens", str(args.max_tokens),
                "--micro-batch-size", str(args.prompts_per_rank), "--total-steps", str(args.steps),
                "--lr", "3e-3", "--warmup-steps", "0", "--min-accuracy", "0", "--max-accuracy", "1",
                "--precision", args.precision, "--checkpoint-dir", str(work / "ckpt"),
                "--checkpoint-interval", "100000", "--metrics-port", "0",
                "--log-file", str(work / "steps.jsonl"),
            ]  # fmt: skip
            done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=work)
            if done.returncode:
                raise SystemExit(f"the trainer failed: {done.stdout[-2000:]}{done.stderr[-3000:]}")
        finally:
            server.send_signal(signal.SIGTERM)  # vLLM's engine and worker stop with it
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
        steps = [json.loads(line) for line in (work / "steps.jsonl").read_text().splitlines()][1:]
    mean = {f"{phase}_seconds": sum(s[f"seconds_{phase}"] for s in steps) / len(steps) for phase in PHASES}
    mean["step_seconds"] = sum(mean.values())
    mean["rollout_share"] = mean["rollout_seconds"] / mean["step_seconds"]
    variant = (
        f"{'tiny-internvl' if internvl else args.preset} {args.engine} {args.task} ranks={args.ranks} "
        f"G={args.group_size} prompts/rank={args.prompts_per_rank} max_tokens={args.max_tokens} "
        f"{args.precision}"
    )
    results.append("gspo_step", variant, mean)


if __name__ == "__main__":
    main()
