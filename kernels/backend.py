"""Whether a Triton kernel can run on these tensors: CUDA tensors with Triton installed, or any
tensors under Triton's interpreter (TRITON_INTERPRET=1, how CI runs the kernels on CPU)."""

from __future__ import annotations

import importlib.util
import os

import torch


def triton_runs(*tensors: torch.Tensor) -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    return all(t.is_cuda for t in tensors)
