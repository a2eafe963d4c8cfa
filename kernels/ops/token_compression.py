"""Token compression for the vision pool: InternVL's pixel shuffle (space-to-depth by 2: a tile's ViT
tokens → 1/4 as many, 4x wider) fused with ViR's per-tile routing (a tile the Visual Resolution
Router sends to the 1/16 path is shuffled by 4 instead: 1/16 as many tokens, 16x wider).

One Triton program per (tile, output token) reads the rxr source patches and writes the token
straight into its rate's packed buffer, so the per-rate masking, the two view/permute/contiguous
copies of InternVL's `pixel_shuffle` and the concatenation all become one pass over the features.
Each rate's buffer then goes through its own projector; `PackedTiles.merge` lays the projected rows
back in tile order, and `offsets` says where each tile's tokens start in that sequence."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlmop.kernels import backend

try:
    import triton
    import triton.language as tl
except ImportError:  # the torch path still runs
    triton = None

RATES = (2, 4)  # space-to-depth factors: 1/4 and 1/16 of the tokens


@dataclass(frozen=True)
class PackedTiles:
    by2: torch.Tensor  # (tokens of the tiles shuffled by 2, 4C), tile order
    by4: torch.Tensor  # (tokens of the tiles shuffled by 4, 16C), tile order
    rates: torch.Tensor  # (T,) the rate each tile took
    offsets: torch.Tensor  # (T + 1,) where each tile's tokens start in the merged sequence

    def merge(self, projected2: torch.Tensor, projected4: torch.Tensor) -> torch.Tensor:
        """The projected rows of both rates as one sequence in tile order."""
        counts = self.offsets.diff()
        position = torch.arange(int(self.offsets[-1]), device=counts.device)
        tile = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
        by2 = (self.rates == 2)[tile]
        out = projected2.new_empty(len(position), projected2.shape[-1])
        out[position[by2]] = projected2
        out[position[~by2]] = projected4
        return out


def pixel_shuffle(x: torch.Tensor, scale: float) -> torch.Tensor:
    """InternVL's pixel_shuffle (ps_version v2): (n, h, w, c) → (n, h·s, w·s, c/s²). The reference."""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale), int(c / scale))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale), int(w * scale), int(c / (scale * scale)))
    return x.permute(0, 2, 1, 3).contiguous()


def compress_tiles(features: torch.Tensor, rates: torch.Tensor) -> PackedTiles:
    """features (T, h, w, C) ViT tokens per tile; rates (T,) 2 or 4 per tile, as ViR chose."""
    if features.dim() != 4 or rates.shape != features.shape[:1]:
        raise ValueError(
            f"want features (T, h, w, C) and rates (T,), got {tuple(features.shape)} and {tuple(rates.shape)}"
        )
    if not bool(((rates == 2) | (rates == 4)).all()):
        raise ValueError(f"rates must each be one of {RATES}, got {sorted(set(rates.tolist()))}")
    tiles, h, w, c = features.shape
    largest = int(rates.max()) if tiles else 2
    if h % largest or w % largest:
        raise ValueError(f"a {h}x{w} tile cannot be shuffled by {largest}")
    rates = rates.to(device=features.device, dtype=torch.int64)
    tokens = h * w // (rates * rates)
    offsets = torch.cat([tokens.new_zeros(1), tokens.cumsum(0)])
    is2 = rates == 2
    # Each tile's first row in its own rate's buffer.
    rows = torch.where(is2, (tokens * is2).cumsum(0), (tokens * ~is2).cumsum(0)) - tokens
    n2, n4 = int(is2.sum()), int((~is2).sum())
    by2 = features.new_empty(n2 * h * w // 4, 4 * c)
    by4 = features.new_empty(n4 * h * w // 16, 16 * c)
    if backend.triton_runs(features) and tiles:
        source = features.contiguous()
        block = triton.next_power_of_2(min(16 * c, 4096))
        _shuffle_route_kernel[(tiles, h * w // 4)](source, rates, rows, by2, by4, h, w, c, BLOCK=block)
    else:
        by2.copy_(pixel_shuffle(features[is2], 0.5).reshape(-1, 4 * c))
        by4.copy_(pixel_shuffle(features[~is2], 0.25).reshape(-1, 16 * c))
    return PackedTiles(by2, by4, rates, offsets)


if triton is not None:

    @triton.jit
    def _shuffle_route_kernel(x, rates, rows, out2, out4, h, w, c, BLOCK: tl.constexpr):
        tile = tl.program_id(0).to(tl.int64)
        token = tl.program_id(1).to(tl.int64)
        rate = tl.load(rates + tile)
        grid_w = w // rate
        if token < (h // rate) * grid_w:  # a tile shuffled by 4 has a quarter of the programs' tokens
            a, b = token // grid_w, token % grid_w
            width = rate * rate * c
            src = x + tile * h * w * c
            row = tl.load(rows + tile) + token
            for start in range(0, width, BLOCK):
                # channel = (j·r + k)·C + ch  ←  source pixel (a·r + j, b·r + k), channel ch
                channel = start + tl.arange(0, BLOCK)
                mask = channel < width
                j, k, ch = channel // (rate * c), (channel // c) % rate, channel % c
                value = tl.load(src + ((a * rate + j) * w + b * rate + k) * c + ch, mask=mask)
                if rate == 2:
                    tl.store(out2 + row * width + channel, value, mask=mask)
                else:
                    tl.store(out4 + row * width + channel, value, mask=mask)
