"""Mixture-of-Experts pretraining (Intern-S1's language model is a Qwen3-MoE): a transformers Qwen3-MoE
model whose sparse blocks are DeepSpeed MoE layers.

Why DeepSpeed's MoE layer rather than transformers' own blocks: it has what pretraining at scale needs
and transformers' blocks lack under DeepSpeed: expert parallelism (each rank holds experts/EP of every
layer, tokens travel to their experts by all-to-all), a capacity factor (tokens beyond an expert's
capacity are dropped and pass through the residual), the load-balancing loss, and the engine's side of
it (expert gradients reduced over the expert-data-parallel group only, one checkpoint file per expert).
DeepSpeed's newer AutoEP keeps transformers' blocks but is dropless and auxiliary-loss-free only, and
written for GPU kernels. The attention, norms and embeddings stay transformers', so the export is a
plain Qwen3-MoE checkpoint that transformers and vLLM load."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeMLP

EXPERTS = "moe.deepspeed_moe.experts.deepspeed_experts."  # a sparse block's local experts, by index
GATE = "moe.deepspeed_moe.gate.wg.weight"


@dataclass(frozen=True)
class Experts:
    """How a MoE model routes and where its experts live."""

    count: int | None = None  # experts per sparse layer (None: the preset's)
    top_k: int | None = None  # experts per token (None: the preset's)
    parallel_size: int = 1  # ranks that share one copy of each layer's experts (EP)
    capacity_factor: float | None = None  # None: dropless (capacity = the busiest expert's load)
    aux_loss_coef: float = 0.001  # weight of the load-balancing loss in the training loss

    def configured(self, config: transformers.Qwen3MoeConfig) -> transformers.Qwen3MoeConfig:
        """The model's config with these settings (a copy). Top-k weights are renormalised over the
        chosen experts, as DeepSpeed's gate does for k >= 2 (top-1 keeps the router's probability)."""
        out = copy.deepcopy(config)
        out.num_experts = self.count or config.num_experts
        out.num_experts_per_tok = self.top_k or config.num_experts_per_tok
        out.norm_topk_prob = out.num_experts_per_tok > 1
        out.router_aux_loss_coef = self.aux_loss_coef
        return out

    def check(self, config: transformers.Qwen3MoeConfig, world: int) -> None:
        """A clear error before any process group or all-to-all could hang on a bad shape."""
        experts, top_k, ep = config.num_experts, config.num_experts_per_tok, self.parallel_size
        if not 1 <= top_k <= experts:
            raise ValueError(f"top-k {top_k} must be between 1 and the number of experts {experts}")
        if experts % ep:
            raise ValueError(f"{experts} experts do not divide over an expert-parallel size of {ep}")
        if world % ep:
            raise ValueError(f"the expert-parallel size {ep} must divide the {world} ranks")


def is_moe(config: transformers.PretrainedConfig) -> bool:
    return isinstance(config, transformers.Qwen3MoeConfig) and config.num_experts > 0


def sparse_layers(config: transformers.Qwen3MoeConfig) -> list[int]:
    """The layers with experts, as transformers decides it (the others have one dense MLP)."""
    dense = set(config.mlp_only_layers or [])
    step = config.decoder_sparse_step
    return [i for i in range(config.num_hidden_layers) if i not in dense and (i + 1) % step == 0]


class SparseBlock(torch.nn.Module):
    """One layer's experts and router, in the place of transformers' sparse block (same input and
    output); keeps its last forward's load-balancing loss and tokens per expert for the trainer."""

    def __init__(self, config: transformers.Qwen3MoeConfig, experts: Experts) -> None:
        from deepspeed.moe.layer import MoE

        super().__init__()
        drop = experts.capacity_factor is not None
        self.moe = MoE(
            hidden_size=config.hidden_size,
            expert=Qwen3MoeMLP(config, intermediate_size=config.moe_intermediate_size),  # type: ignore[no-untyped-call]
            num_experts=config.num_experts,
            ep_size=experts.parallel_size,
            k=config.num_experts_per_tok,
            capacity_factor=experts.capacity_factor or 1.0,
            eval_capacity_factor=experts.capacity_factor or 1.0,
            drop_tokens=drop,
            use_rts=False,  # deterministic routing: a resumed run takes the same path
            top2_2nd_expert_sampling=False,  # the second expert by score, as Qwen3 routes
        )
        self.aux_loss: torch.Tensor | None = None
        self.tokens_per_expert: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor
        output, self.aux_loss, self.tokens_per_expert = self.moe(hidden_states)
        return output


def build(config: transformers.Qwen3MoeConfig, experts: Experts, seed: int) -> torch.nn.Module:
    """The model with this rank's experts only (a layer's experts split over the EP group, so no rank
    holds them all). Every expert's weights come from its own seed (layer, global index), so the model
    is the same whatever the EP size; the rest is the same on every rank."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    experts.check(config, world)
    # Built without experts (and with 1-wide placeholder MLPs, replaced below): never the whole model.
    skeleton = copy.deepcopy(config)
    skeleton.num_experts, skeleton.intermediate_size = 0, 1
    model = transformers.Qwen3MoeForCausalLM(skeleton)
    # The model's config (shared by its modules, with the attention implementation chosen) says again
    # what the model is.
    skeleton.num_experts, skeleton.intermediate_size = config.num_experts, config.intermediate_size
    sparse = set(sparse_layers(config))
    first = expert_rank(experts) * (config.num_experts // experts.parallel_size)
    for index, layer in enumerate(model.model.layers):
        mlp: torch.nn.Module = (
            SparseBlock(config, experts) if index in sparse else Qwen3MoeMLP(config)  # type: ignore[no-untyped-call]
        )
        generators: dict[int, torch.Generator] = {}  # -1: the layer's shared weights
        for name, param in mlp.named_parameters():
            key = first + int(name[len(EXPERTS) :].split(".")[0]) if name.startswith(EXPERTS) else -1
            if key not in generators:  # ints hash alike in every process (strings would not)
                generators[key] = torch.Generator().manual_seed(hash((seed, index, key)) % 2**63)
            with torch.no_grad():
                param.normal_(0.0, config.initializer_range, generator=generators[key])
        layer.mlp = mlp
    return model


def expert_rank(experts: Experts) -> int:
    """This rank's place in its expert-parallel group: DeepSpeed groups consecutive ranks."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank % experts.parallel_size


def blocks(model: torch.nn.Module) -> list[SparseBlock]:
    return [m for m in model.modules() if isinstance(m, SparseBlock)]


def active_parameters(model: torch.nn.Module) -> int:
    """Parameters a token passes through: the shared ones and top-k experts of each sparse layer."""
    active = sum(p.numel() for p in model.parameters())
    for block in blocks(model):  # this rank's experts out, top-k experts' worth in
        held = sum(p.numel() for p in block.moe.deepspeed_moe.experts.parameters())
        active += held // block.moe.num_local_experts * block.moe.deepspeed_moe.gate.k - held
    return int(active)


def optimizer_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Expert parameters in groups of their own: DeepSpeed's ZeRO reduces them over the
    expert-data-parallel group, not the whole data-parallel world."""
    from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer

    named = [{**g, "name": f"group{i}"} for i, g in enumerate(groups)]
    split: list[dict[str, Any]] = split_params_into_different_moe_groups_for_optimizer(named)
    return split


def aux_loss(found: list[SparseBlock]) -> torch.Tensor:
    """The last forward's load-balancing loss, summed over the sparse layers."""
    return torch.stack([b.aux_loss for b in found if b.aux_loss is not None]).sum()


def step_stats(found: list[SparseBlock]) -> torch.Tensor:
    """[load-balancing loss summed over layers, then tokens per expert of every layer] of the last
    forward, to sum over micro-batches and ranks."""
    counts = [b.tokens_per_expert.float() for b in found if b.tokens_per_expert is not None]
    return torch.cat([aux_loss(found).detach().float().reshape(1), *counts])


def summary(stats: torch.Tensor, layers: int, micro_batches: int) -> dict[str, float]:
    """Progress figures from step_stats summed over a step: the mean load-balancing loss of a layer,
    and the load of the busiest expert over an even share (1.0 balanced; the worst layer)."""
    counts = stats[1:].reshape(layers, -1)
    share = counts.sum(dim=1, keepdim=True) / counts.shape[1]
    imbalance = (counts.max(dim=1, keepdim=True).values / share.clamp(min=1)).max()
    return {"auxLoss": float(stats[0]) / (layers * micro_batches), "expertLoadImbalance": float(imbalance)}


def hf_name(name: str, first_expert: int) -> str:
    """Our parameter name -> the Qwen3-MoE checkpoint's (per-expert weights, as on the hub)."""
    if EXPERTS in name:
        head, tail = name.split(EXPERTS)
        local, rest = tail.split(".", 1)
        return f"{head}experts.{first_expert + int(local)}.{rest}"
    return name.replace(GATE, "gate.weight")


def export(model: torch.nn.Module, experts: Experts, directory: Path) -> None:
    """Write the model as a Qwen3-MoE checkpoint (config + safetensors) on rank 0. Every rank takes
    part: the experts of each EP group are gathered in one all-gather of a flat buffer (rank 0's group
    holds every expert)."""
    from deepspeed.utils import groups

    state = model.state_dict()
    local = [k for k in state if EXPERTS in k]  # the same names, in the same order, on every rank
    ep = experts.parallel_size
    parts = [[state[k] for k in local]]
    if ep > 1:
        flat = torch.cat([state[k].detach().reshape(-1) for k in local])
        gathered = [torch.empty_like(flat) for _ in range(ep)]
        dist.all_gather(gathered, flat, group=groups._get_expert_parallel_group(f"ep_size_{ep}"))
        sizes = [state[k].numel() for k in local]
        split = [torch.split(g, sizes) for g in gathered]
        parts = [[t.view_as(state[k]) for t, k in zip(s, local, strict=True)] for s in split]
    if dist.is_initialized() and dist.get_rank() != 0:
        return
    config: Any = model.config
    per_rank = config.num_experts // ep
    out = {hf_name(k, 0): v for k, v in state.items() if EXPERTS not in k}
    for rank, tensors in enumerate(parts):
        out.update({hf_name(k, rank * per_rank): t for k, t in zip(local, tensors, strict=True)})
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    # Copies: DeepSpeed's parameters are views into flat buffers, which safetensors refuses.
    copies = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in out.items()}
    save_file(copies, str(directory / "model.safetensors"), metadata={"format": "pt"})


def load(model: torch.nn.Module, experts: Experts, path: Path) -> None:
    """Read this rank's weights from a Qwen3-MoE checkpoint (safetensors, one expert per tensor as on
    the hub): the shared ones and only the experts this rank holds."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        files: dict[str, str] = json.loads(index.read_text())["weight_map"]
    else:
        with safe_open(str(path / "model.safetensors"), "pt") as single:
            files = dict.fromkeys(single.keys(), "model.safetensors")
    config: Any = model.config
    first = expert_rank(experts) * (config.num_experts // experts.parallel_size)
    wanted: dict[str, list[tuple[str, torch.nn.Parameter]]] = {}
    for name, param in model.named_parameters():  # a tied head is not a parameter of its own
        key = hf_name(name, first)
        if key not in files:
            raise ValueError(f"{path} has no tensor {key} (per-expert Qwen3-MoE weights are expected)")
        wanted.setdefault(files[key], []).append((key, param))
    for file, params in wanted.items():
        with safe_open(str(path / file), "pt") as f, torch.no_grad():
            for key, param in params:
                param.copy_(f.get_tensor(key))
