"""The two halves of a Hugging Face InternVL checkpoint (transformers' `InternVLForConditionalGeneration`:
vision_tower, multi_modal_projector, language_model), each loaded by
the pool that serves it: the vision pool reads only the tower and projector tensors from the
safetensors files (the language model is never materialised there), the language pool the whole model.

ViR's 1/16 path needs a projector from 16C (pixel shuffle by 4) to the LM width: InternVL3.5-Flash
ships one; here it lives in `vir.safetensors` beside the checkpoint (`projector.*`, the shape of
transformers' InternVLMultiModalProjector at downsample ratio 1/4).

`save_tiny` writes what vLLM needs to serve the checkpoint as written (its InternS1 implementation of
this layout): the byte tokenizer as Hugging Face files with InternVL's image tokens and the chat
template the stand-in uses, the processor configs, an index naming only the model's safetensors (vLLM
would load `vir.safetensors` too), an untied LM head (vLLM's in-place reload skips a tied one) and a
head_dim of 64 (vLLM's CPU attention needs at least that)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vlmop.workloads.serving.images import IMAGENET_MEAN, IMAGENET_STD

VIR_FILE = "vir.safetensors"
# Both layouts found in InternVL checkpoints (the hub's -hf repos and transformers 5 save the first).
VISION_PREFIXES = {
    "vision_tower.": "tower",
    "multi_modal_projector.": "projector",
    "model.vision_tower.": "tower",
    "model.multi_modal_projector.": "projector",
}
# Past the byte tokenizer's 259 ids, inside the tiny vocabulary: an image is <img> <IMG_CONTEXT>*n </img>.
IMAGE_START_ID, IMAGE_END_ID, VIDEO_TOKEN_ID, IMAGE_TOKEN_ID = 259, 260, 261, 263
IMAGE_TOKENS = {"<img>": IMAGE_START_ID, "</img>": IMAGE_END_ID, "<video>": VIDEO_TOKEN_ID,
                "<IMG_CONTEXT>": IMAGE_TOKEN_ID}  # fmt: skip
# The stand-in's prompt format (language.parse_chat), for vLLM's chat endpoint: image parts in place.
# Newlines are written as expressions: chat templates render with trim_blocks, which drops a newline
# right after a block tag.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' }}{% if m['content'] is string %}"
    "{{ m['content'] }}{% else %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}"
    "{% else %}<IMG_CONTEXT>{% endif %}{% endfor %}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def internvl_config(vision: dict[str, Any], text: dict[str, Any]) -> Any:
    from transformers import InternVLConfig

    return InternVLConfig(
        vision_config=vision,
        text_config={"model_type": "qwen2", "vocab_size": 264, "max_position_embeddings": 4096,
                     "tie_word_embeddings": False, **text},
        image_token_id=IMAGE_TOKEN_ID,
        downsample_ratio=0.5,
    )  # fmt: skip


def tiny_config() -> Any:
    """An InternVL-shaped model small enough for CPU tests: 32x32 tiles of 4x4 patches (64 ViT tokens,
    16 after pixel shuffle by 2, 4 by 4), a 2-layer Qwen2 of width 128 (2 heads of 64) over the byte
    tokenizer."""
    return internvl_config(
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 1,
         "image_size": [32, 32], "patch_size": [4, 4]},
        {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1},
    )  # fmt: skip


def small_config() -> Any:
    """Closer to a real InternVL's proportions, still CPU-sized (for benchmarks): 224x224 tiles of
    14x14 patches (256 ViT tokens, 64 after pixel shuffle), a 4-layer ViT of width 256 and a 4-layer
    LM of width 512."""
    return internvl_config(
        {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4,
         "image_size": [224, 224], "patch_size": [14, 14]},
        {"hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 4, "num_attention_heads": 8,
         "num_key_value_heads": 2},
    )  # fmt: skip


def save_tiny(directory: Path, seed: int = 0, config: Any = None) -> Path:
    """A random InternVL checkpoint (tiny unless `config`) with its ViR projector: what the serving
    tests and benchmarks load."""
    from transformers import InternVLForConditionalGeneration

    from vlmop.workloads.pretrain.data import ByteTokenizer

    torch.manual_seed(seed)
    config = config or tiny_config()
    config.tie_word_embeddings = False
    model = InternVLForConditionalGeneration(config)
    model.save_pretrained(directory)
    save_file(vir_projector(config).state_dict(), str(directory / VIR_FILE))
    index = {"metadata": {}, "weight_map": dict.fromkeys(model.state_dict(), "model.safetensors")}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    tokens = {"start_image_token": "<img>", "end_image_token": "</img>",
              "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}  # fmt: skip
    ByteTokenizer.save(directory, IMAGE_TOKENS, extra_special_tokens=tokens, chat_template=CHAT_TEMPLATE)
    vision = config.vision_config
    side = vision.image_size[0]
    tile_tokens = (side // vision.patch_size[0]) ** 2 // 4  # pixel shuffle by 2 (ViR's 1/4)
    processor = {"processor_class": "InternVLProcessor", "image_seq_length": tile_tokens}
    image = {"image_processor_type": "GotOcr2ImageProcessorFast", "processor_class": "InternVLProcessor",
             "size": {"height": side, "width": side}, "crop_to_patches": False, "do_resize": True,
             "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
             "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD)}  # fmt: skip
    (directory / "processor_config.json").write_text(json.dumps(processor))
    (directory / "preprocessor_config.json").write_text(json.dumps(image))
    return directory


def vir_projector(config: Any) -> torch.nn.Module:
    from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector

    quarter = copy.deepcopy(config)
    quarter.downsample_ratio = 0.25  # input width 16C: the tokens of a pixel shuffle by 4
    return InternVLMultiModalProjector(quarter)


def _tensors(directory: Path, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under `prefixes`, from one or several (indexed) safetensors files."""
    index = directory / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.exists()
        else ["model.safetensors"]
    )
    out: dict[str, torch.Tensor] = {}
    for name in files:
        with safe_open(str(directory / name), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.startswith(prefixes):
                    out[key] = f.get_tensor(key)
    return out


class VisionParts(torch.nn.Module):
    """ViT + projector (+ ViR's 1/16 projector) of an InternVL checkpoint."""

    def __init__(self, directory: Path, vir: bool) -> None:
        super().__init__()
        from transformers import InternVLConfig
        from transformers.models.internvl.modeling_internvl import (
            InternVLMultiModalProjector,
            InternVLVisionModel,
        )

        config: Any = InternVLConfig.from_pretrained(directory)
        self.config = config
        self.tower = InternVLVisionModel(config.vision_config)
        self.projector = InternVLMultiModalProjector(self.config)
        tensors = _tensors(directory, tuple(VISION_PREFIXES))
        states: dict[str, dict[str, torch.Tensor]] = {"tower": {}, "projector": {}}
        for prefix, part in VISION_PREFIXES.items():
            states[part].update({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        for part, state in states.items():
            getattr(self, part).load_state_dict(state, strict=True)
        self.projector16: torch.nn.Module | None = None
        if vir:
            if not (directory / VIR_FILE).exists():
                raise FileNotFoundError(
                    f"ViR needs the 1/16 projector {directory / VIR_FILE}; or turn ViR off"
                )
            self.projector16 = vir_projector(self.config)
            with safe_open(str(directory / VIR_FILE), framework="pt") as f:
                self.projector16.load_state_dict({k: f.get_tensor(k) for k in f.keys()}, strict=True)  # noqa: SIM118
        self.train(False)

    @property
    def tile_size(self) -> int:
        return int(self.config.vision_config.image_size[0])

    @torch.no_grad()
    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(T, 3, S, S) normalised tiles → (T, h, w, C) ViT tokens on their patch grid (CLS dropped)."""
        hidden = self.tower(pixel_values=pixels.to(self.tower.dtype)).last_hidden_state
        if self.config.vision_feature_select_strategy == "default":
            hidden = hidden[:, 1:]
        side = int(hidden.shape[1] ** 0.5)
        grid: torch.Tensor = hidden.reshape(hidden.shape[0], side, side, -1)
        return grid


def default_device() -> str:
    """Where a pool's model runs unless told: its GPU when the pod has one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_language(directory: Path) -> Any:
    from transformers import InternVLForConditionalGeneration

    model = InternVLForConditionalGeneration.from_pretrained(directory)
    model.train(False)
    return model
