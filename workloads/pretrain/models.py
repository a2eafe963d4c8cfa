"""Models: named presets built from configs (random init; nothing is downloaded) and real loading of
a local Hugging Face checkpoint (config + safetensors, never pickle)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers.initialization import no_init_weights
from transformers.integrations.deepspeed import HfDeepSpeedConfig

from vlmop.operator.api.training import MOE_PRESET_EXPERTS, ModelPreset
from vlmop.workloads.pretrain import moe

IMAGE_TOKEN = 300  # the placeholder id of one image patch in presets (byte tokenizer ids end at 258)


def _tiny_text(**overrides: Any) -> transformers.LlamaConfig:
    base: dict[str, Any] = dict(
        vocab_size=512,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64: vLLM's CPU attention needs at least that
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=False,  # vLLM's in-place reload leaves a tied head with its old weights
    )
    return transformers.LlamaConfig(**{**base, **overrides})


def _qwen3_moe(**overrides: Any) -> transformers.Qwen3MoeConfig:
    base: dict[str, Any] = dict(
        vocab_size=151936,
        head_dim=128,
        num_key_value_heads=4,
        max_position_embeddings=40960,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        norm_topk_prob=True,
        tie_word_embeddings=False,
    )
    return transformers.Qwen3MoeConfig(**{**base, **overrides})


def preset_config(name: str) -> transformers.PretrainedConfig:
    if name == "tiny":
        return _tiny_text()
    if name == "tiny-moe":  # a 2-layer Qwen3-MoE: 4 experts, top-2
        return _qwen3_moe(
            vocab_size=512, hidden_size=128, intermediate_size=256, moe_intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
            num_experts=4, num_experts_per_tok=2, max_position_embeddings=4096,
        )  # fmt: skip
    if name == "qwen3-30b-a3b":  # Qwen3-30B-A3B's shape: 128 experts, top-8
        return _qwen3_moe(
            hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_hidden_layers=48,
            num_attention_heads=32, num_experts=128, num_experts_per_tok=8,
        )  # fmt: skip
    if name == "qwen3-235b-a22b":  # Intern-S1's language model (Qwen3-235B-A22B's shape)
        return _qwen3_moe(
            hidden_size=4096, intermediate_size=12288, moe_intermediate_size=1536, num_hidden_layers=94,
            num_attention_heads=64, num_experts=128, num_experts_per_tok=8,
        )  # fmt: skip
    if name == "qwen3-1.7b":  # Qwen3-1.7B's shape (dense)
        return transformers.Qwen3Config(
            vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
            num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=True,
        )  # fmt: skip
    if name == "tiny-vl":  # LLaVA-style: ViT -> MLP projector -> LM, 16 patch tokens per 32x32 image
        vision = transformers.CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
        return transformers.LlavaConfig(
            vision_config=vision, text_config=_tiny_text(), image_token_index=IMAGE_TOKEN, image_seq_length=16
        )
    if name == "qwen2.5-0.5b":  # the shape of Qwen2.5-0.5B (InternVL3.5-1B's language model)
        return transformers.Qwen2Config(
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6},
            tie_word_embeddings=True,
        )
    raise ValueError(f"unknown model preset {name!r}: choose one of {', '.join(PRESETS)}")


PRESETS: tuple[str, ...] = typing.get_args(ModelPreset)
_ZERO3: list[HfDeepSpeedConfig] = []  # held for the process: transformers asks it whether ZeRO-3 is on


def is_vision(config: transformers.PretrainedConfig) -> bool:
    return getattr(config, "vision_config", None) is not None


def build(
    preset: str | None,
    path: Path | None,
    weights: bool = True,
    zero3: Mapping[str, Any] | None = None,
    experts: moe.Experts | None = None,
) -> torch.nn.Module:
    """A model in fp32 (DeepSpeed casts to bf16/fp16 from its config). `weights=False`: its structure
    alone, nothing initialised or read, for a resume that loads every weight from the checkpoint (the
    weights are loaded once, not first from the starting model and then again).

    `zero3`: the DeepSpeed config of a ZeRO-3 run. Every parameter is then created partitioned across
    the ranks (deepspeed.zero.Init, through transformers' DeepSpeed integration), so no rank ever
    holds the whole model: each module is gathered only while it is initialised (on rank 0, then
    scattered), or loaded from a checkpoint's shards. Either way the weights are those of the same
    seed without ZeRO-3: the model is built uninitialised, then initialised module by module in the
    same order.

    `experts`: how a Mixture-of-Experts preset routes and shards its experts (vlmop.workloads.pretrain.moe);
    its count and top-k override the preset's."""
    config = (
        transformers.AutoConfig.from_pretrained(path) if path is not None else preset_config(preset or "tiny")
    )
    if experts is not None or moe.is_moe(config):
        return _build_moe(config, path, weights, zero3, experts or moe.Experts())
    if zero3 is not None:
        _ZERO3[:] = [HfDeepSpeedConfig(dict(zero3))]  # type: ignore[no-untyped-call]  # a weak reference in transformers
    if path is not None and weights:
        model: torch.nn.Module = auto_class(config).from_pretrained(
            path, use_safetensors=True, dtype=torch.float32
        )
        return model
    if zero3 is not None:  # initialised even for a resume: transformers' ZeRO-3 construction does
        cls: Any = model_class(config) if path is None else auto_class(config)
        make = cls._from_config if path is None else cls.from_config  # the Auto class's public name
        return typing.cast(torch.nn.Module, make(config, dtype=torch.float32))
    with no_init_weights():  # buffers (RoPE's) are still computed: only parameter init is skipped
        built: Any = (
            auto_class(config).from_config(config, dtype=torch.float32)
            if path is not None
            else model_class(config)(config)
        )
    if weights:
        built.init_weights()  # as ZeRO-3's construction does: module by module, after construction
    return typing.cast(torch.nn.Module, built)


def _build_moe(
    config: transformers.PretrainedConfig, path: Path | None, weights: bool, zero3: Any, experts: moe.Experts
) -> torch.nn.Module:
    if not moe.is_moe(config):
        raise ValueError("expert settings need a Mixture-of-Experts model: " + ", ".join(MOE_PRESET_EXPERTS))
    if zero3 is not None:
        raise ValueError("DeepSpeed's MoE layers train under ZeRO stage 0, 1 or 2, not 3")
    if path is not None and experts.count not in (None, config.num_experts):
        raise ValueError(f"{path} has {config.num_experts} experts per layer, not {experts.count}")
    model = moe.build(experts.configured(typing.cast(Any, config)), experts, seed=int(torch.initial_seed()))
    if path is not None and weights:
        moe.load(model, experts, path)
    return model


def auto_class(config: transformers.PretrainedConfig) -> Any:
    return (
        transformers.AutoModelForImageTextToText if is_vision(config) else transformers.AutoModelForCausalLM
    )


def model_class(config: transformers.PretrainedConfig) -> type[torch.nn.Module]:
    """The class of a preset's model (concrete classes, so nothing depends on Auto* mappings)."""
    if is_vision(config):
        return transformers.LlavaForConditionalGeneration
    if isinstance(config, transformers.Qwen2Config):
        return transformers.Qwen2ForCausalLM
    if isinstance(config, transformers.Qwen3Config):
        return transformers.Qwen3ForCausalLM
    return transformers.LlamaForCausalLM


def config_of(model: torch.nn.Module) -> transformers.PretrainedConfig:
    config: transformers.PretrainedConfig = model.config  # type: ignore[assignment]
    return config


def flops_per_token(model: torch.nn.Module, seq_length: int) -> float:
    """Training FLOPs per token: 6 x parameters + attention (PaLM appendix B estimate); of a MoE, the
    parameters a token passes through."""
    params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())  # ZeRO-3: whole sizes
    if moe.blocks(model):
        params = moe.active_parameters(model)
    text = getattr(config_of(model), "text_config", None) or config_of(model)
    attention = 12 * text.num_hidden_layers * text.hidden_size * seq_length
    return float(6 * params + attention)
