"""Run for test_zero3_init.py: the real Trainer, one rank (gloo), ZeRO-3, the tiny preset with 2 OpenMP
threads; prints the voluntary context switches of its training steps and its tokens/s as JSON."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from vlmop.workloads.pretrain.config import parse
from vlmop.workloads.pretrain.trainer import Trainer


def main(workdir: Path) -> None:
    np.save(workdir / "tokens.npy", np.random.default_rng(0).integers(3, 500, 8 * 256 * 40).astype(np.int32))
    trainer = Trainer(parse([
        "--data", str(workdir / "tokens.npy"), "--model-preset", "tiny", "--seq-length", "256",
        "--precision", "fp32", "--micro-batch-size", "8", "--zero-stage", "3", "--metrics-port", "0",
        "--checkpoint-dir", str(workdir / "ckpt"),
    ]))  # fmt: skip
    for _ in range(3):  # warm-up
        trainer.train_step()
    before, started, steps = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 15
    for _ in range(steps):
        trainer.train_step()
    elapsed, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    switches, faults = (
        (after.ru_nvcsw - before.ru_nvcsw) / steps,
        (after.ru_minflt - before.ru_minflt) / steps,
    )
    tokens = steps * 8 * 256 / elapsed
    print(json.dumps({"switches_per_step": switches, "faults_per_step": faults, "tokens_per_second": tokens}))
    trainer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
