"""Where a GSPO step's time goes: rollout (sampling G answers per prompt from the rollout server),
reward (the Mixture-of-Rewards), update (log-probs, loss, backward, optimizer) and publish (weights to
safetensors, the server loads them). A rollout server process plus the trainer under torchrun.

  python bench/gspo_step.py                                   # CPU: tiny preset, 2 ranks, letters
  python bench/gspo_step.py --task sorting --max-tokens 64 --group-size 16

Reports rank 0's mean seconds per phase over the steps after the first (warm-up)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results

from vlmop.operator.localapi.loopback import free_port, wait_ready

PHASES = ("rollout", "reward", "update", "publish")


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
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        work, port = Path(tmp), free_port()
        (work / "weights").mkdir()
        server = subprocess.Popen(
            [sys.executable, "-m", "vlmop.workloads.rl.rollout_server", "--model-preset", args.preset,
             "--weights-dir", str(work / "weights"), "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{url}/health", server)
            command = [
                sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={args.ranks}",
                "--master-port", str(free_port()), "-m", "vlmop.workloads.rl.gspo", "--rollout-url", url,
                "--weights-dir", str(work / "weights"), "--model-preset", args.preset, "--task", args.task,
                "--group-size", str(args.group_size), "--max-tokens", str(args.max_tokens),
                "--micro-batch-size", str(args.prompts_per_rank), "--total-steps", str(args.steps),
                "--lr", "3e-3", "--warmup-steps", "0", "--min-accuracy", "0", "--max-accuracy", "1",
                "--precision", args.precision, "--checkpoint-dir", str(work / "ckpt"),
                "--checkpoint-interval", "100000", "--metrics-port", "0",
                "--log-file", str(work / "steps.jsonl"),
            ]  # fmt: skip
            subprocess.run(command, env=env, check=True, capture_output=True)
        finally:
            server.terminate()
            server.wait(10)
        steps = [json.loads(line) for line in (work / "steps.jsonl").read_text().splitlines()][1:]
    mean = {f"{phase}_seconds": sum(s[f"seconds_{phase}"] for s in steps) / len(steps) for phase in PHASES}
    mean["step_seconds"] = sum(mean.values())
    variant = (
        f"{args.preset} {args.task} ranks={args.ranks} G={args.group_size} "
        f"prompts/rank={args.prompts_per_rank} max_tokens={args.max_tokens} {args.precision}"
    )
    results.append("gspo_step", variant, mean)


if __name__ == "__main__":
    main()
