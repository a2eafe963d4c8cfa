"""Installed into the CPU vLLM venv only (by .ci/vllm-venv), never into an image.

PyPI's torchvision wheels are CUDA builds: beside the CPU torch their C++ ops do not load, and
torchvision 0.28 then fails on import while registering fake kernels for two of those ops
(`operator torchvision::nms does not exist`). vLLM imports torchvision (transformers' InternVL video
processor), so this hook defines the two op schemas just before torchvision is first imported. The ops
stay without kernels: vLLM's CPU path never calls them."""

import importlib.abc
import sys

SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


class _DefineTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name == "torchvision":
            sys.meta_path.remove(self)
            import torch

            for op in ("nms", "qnms"):
                torch.library.define(f"torchvision::{op}", SCHEMA)
        return None  # the normal finders import it


sys.meta_path.insert(0, _DefineTorchvisionOps())
