"""Append benchmark rows to bench/results.csv (benchmark, variant, metric, value, device, timestamp)."""

from __future__ import annotations

import csv
import datetime
import os
import platform
from collections.abc import Mapping
from pathlib import Path

PATH = Path(__file__).resolve().parent / "results.csv"
HEADER = ["benchmark", "variant", "metric", "value", "device", "timestamp"]


def device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name()
    except ImportError:
        pass
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def append(benchmark: str, variant: str, metrics: Mapping[str, float], where: str | None = None) -> None:
    stamp = datetime.datetime.now(tz=datetime.UTC).isoformat(timespec="seconds")
    new = not PATH.exists()
    with PATH.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(HEADER)
        for metric, value in metrics.items():
            writer.writerow([benchmark, variant, metric, f"{value:.2f}", where or device(), stamp])
            print(f"{benchmark} [{variant}] {metric}: {value:.2f}")
