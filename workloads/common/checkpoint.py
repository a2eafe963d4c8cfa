"""Checkpoint directories shared by every rank: one `step-NNNNNNNN` directory per save, marked
complete by rank 0 only after every rank has written its part, so a crash mid-save never leaves a
checkpoint that resume would trust. Per-rank RNG state is stored as JSON (no pickle)."""

from __future__ import annotations

import base64
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

COMPLETE = "COMPLETE"  # written last, holding the trainer state
PREFIX = "step-"


def tag(step: int) -> str:
    return f"{PREFIX}{step:08d}"


@dataclass(frozen=True)
class Store:
    root: Path

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.glob(PREFIX + "*") if (p / COMPLETE).is_file()]
        return sorted(found, key=lambda p: p.name)

    def latest(self) -> Path | None:
        done = self.complete()
        return done[-1] if done else None

    def resolve(self, resume_from: str) -> Path | None:
        """`latest`, `none`, or an explicit checkpoint directory (which must be complete)."""
        if resume_from == "none":
            return None
        if resume_from == "latest":
            return self.latest()
        path = Path(resume_from)
        if not (path / COMPLETE).is_file():
            raise FileNotFoundError(f"--resume-from {path}: not a complete checkpoint (no {COMPLETE})")
        return path

    def mark_complete(self, directory: Path, state: dict[str, Any]) -> None:
        tmp = directory / (COMPLETE + ".tmp")
        tmp.write_text(json.dumps(state, sort_keys=True))
        tmp.replace(directory / COMPLETE)  # atomic: resume sees the marker whole or not at all

    def prune(self, keep: int) -> list[Path]:
        """Remove all but the newest `keep` complete checkpoints and any incomplete one older than
        the newest complete (a save that died); returns what was removed."""
        done = self.complete()
        newest = done[-1].name if done else ""
        stale = [p for p in self.root.glob(PREFIX + "*") if not (p / COMPLETE).is_file() and p.name < newest]
        removed = done[:-keep] + stale if keep else stale
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        return removed


def state(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((directory / COMPLETE).read_text())
    return loaded


def save_rng(directory: Path, rank: int) -> None:
    payload = {
        "python": _encode_python(random.getstate()),
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
    }
    if torch.cuda.is_available():
        payload["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode()
    (directory / f"rng-rank{rank}.json").write_text(json.dumps(payload))


def load_rng(directory: Path, rank: int) -> bool:
    path = directory / f"rng-rank{rank}.json"
    if not path.is_file():
        return False  # saved with another world size: the data order is still exact, dropout is not
    payload = json.loads(path.read_text())
    random.setstate(_decode_python(payload["python"]))
    torch.set_rng_state(_bytes_tensor(payload["torch"]))
    if "cuda" in payload and torch.cuda.is_available():
        torch.cuda.set_rng_state(_bytes_tensor(payload["cuda"]))
    return True


def _bytes_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def _encode_python(value: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = value
    return [version, list(internal), gauss]


def _decode_python(value: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = value
    return (version, tuple(internal), gauss)


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's weights as separate CPU tensors: DeepSpeed's parameters are views into flat
    buffers, which safetensors refuses to save (it sees one storage shared by every tensor)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}
