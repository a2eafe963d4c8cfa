"""A vLLM general plugin (entry point `vllm.general_plugins`, loaded by every vLLM process), installed
beside vLLM in the `lm` image and the CPU test venv; it imports only vLLM.

vLLM 0.32's InternS1/InternVL `image_embeds` input declares every image of a batch to have the same
token count (TensorShape("ni", "tifs", "hs") without "tifs" dynamic). With ViR each image has its own
count, so two such images in one forward pass (one request, or two requests batched together) fail
the check inside the engine and kill it. The model's code already handles a list of images of
different lengths; only the declared shape is wrong, so this marks "tifs" dynamic. The gateway's
multi-image test (tests/workloads/test_vllm.py) fails without it."""

from __future__ import annotations

from typing import Annotated


def register() -> None:
    import torch
    from vllm.model_executor.models import interns1
    from vllm.utils.tensor_schema import TensorShape

    shape = TensorShape("ni", "tifs", "hs", dynamic_dims={"tifs"})
    interns1.InternS1ImageEmbeddingInputs.__annotations__["data"] = Annotated[
        torch.Tensor | list[torch.Tensor], shape
    ]
