"""The ds_config a trainer gang runs with, rendered from the DeepSpeed section of the spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlmop.operator.api.training import DeepSpeed


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: `override` wins; nested objects merge key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def ds_config(spec: DeepSpeed, gradient_clipping: float = 1.0) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": spec.zero_stage}
    if spec.zero_stage >= 1:
        zero.update(overlap_comm=True, contiguous_gradients=True)
    if spec.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if spec.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if spec.zero_stage == 3:
        # Save a consolidated 16-bit copy too, so a finished job yields a loadable model directory.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    rendered: dict[str, Any] = {
        # train_batch_size is left out: DeepSpeed derives it from micro batch x accumulation x ranks.
        "train_micro_batch_size_per_gpu": spec.micro_batch_size,
        "gradient_accumulation_steps": spec.gradient_accumulation_steps,
        "gradient_clipping": gradient_clipping,
        "zero_optimization": zero,
        "bf16": {"enabled": spec.precision == "bf16"},
        "fp16": {"enabled": spec.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        # The trainer reports progress itself (metrics endpoint); DeepSpeed's prints only add noise.
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    return merged(rendered, spec.config or {})
