"""bench/autoscaling_sim.py --trace, run as a user runs it: any CSV with the Azure trace's columns
replays through every policy (one line each, in the documented format) and gets its PNG; a CSV without
them is refused naming the column."""

from __future__ import annotations

import csv
import datetime
import random
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^(\S+) gpu_hours=([\d.]+) slo_over_pct=([\d.]+) actions=(\d+)$", re.M)


def simulate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "bench" / "autoscaling_sim.py"), *args]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)


def test_any_csv_with_the_azure_columns_replays_through_every_policy(tmp_path: Path) -> None:
    rng = random.Random(7)  # noqa: S311 (a trace, not a secret)
    start, at = datetime.datetime(2024, 5, 1, 12), 0.0
    with (tmp_path / "mine.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        while at < 1500:  # 25 minutes at 3 requests/s, a step to 6/s halfway
            at += rng.expovariate(3.0 if at < 750 else 6.0)
            stamp = (start + datetime.timedelta(seconds=at)).isoformat(sep=" ")
            writer.writerow([stamp, rng.randint(100, 2000), rng.randint(10, 300)])
    done = simulate(tmp_path, "--trace", "mine.csv", "--plots", "plots")
    assert done.returncode == 0, done.stderr
    lines = {
        policy: (float(gpu), float(over), int(actions))
        for policy, gpu, over, actions in LINE.findall(done.stdout)
    }
    assert list(lines) == ["hpa-gpu", "keda-queue", "vlmop", "hindsight"], done.stdout
    # vLLM's GPU reads busy whenever a request runs: HPA on it buys the most GPU-hours of all.
    assert lines["vlmop"][0] < lines["hpa-gpu"][0] and lines["hindsight"][0] <= lines["vlmop"][0]
    assert (tmp_path / "plots" / "mine.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_csv_without_the_columns_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("TIMESTAMP,ContextTokens\n2024-05-01 12:00:00,100\n")
    done = simulate(tmp_path, "--trace", "bad.csv", "--plots", "")
    assert done.returncode != 0 and "no column GeneratedTokens" in done.stderr
