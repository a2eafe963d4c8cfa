"""Pixel shuffle fused with ViR routing against InternVL's pixel_shuffle applied tile by tile, on the
Triton kernel (compiled on a GPU, the interpreter on CPU) and on the torch path."""

from __future__ import annotations

import pytest
import torch

from vlmop.kernels.ops.token_compression import compress_tiles, pixel_shuffle

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_pixel_shuffle_is_space_to_depth_with_row_offset_major_channels() -> None:
    x = torch.randn(1, 8, 12, 3)
    for r in (2, 4):
        out = pixel_shuffle(x, 1 / r)
        assert out.shape == (1, 8 // r, 12 // r, 3 * r * r)
        for a, b, j, k, c in [(0, 0, 0, 1, 2), (1, 2, r - 1, 0, 1), (8 // r - 1, 12 // r - 1, 1, r - 1, 0)]:
            assert out[0, a, b, (j * r + k) * 3 + c] == x[0, a * r + j, b * r + k, c]


def per_tile(features: torch.Tensor, rates: torch.Tensor) -> list[torch.Tensor]:
    c = features.shape[-1]
    return [
        pixel_shuffle(features[i : i + 1], 1 / int(r)).reshape(-1, int(r) ** 2 * c)
        for i, r in enumerate(rates)
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(
    ("shape", "rates"),
    [
        ((5, 8, 12, 3), [2, 4, 4, 2, 2]),  # mixed, non-square tiles, odd channels
        ((3, 16, 16, 10), [4, 4, 4]),  # all on the 1/16 path
        ((4, 6, 10, 7), [2, 2, 2, 2]),  # all on the 1/4 path; 6x10 cannot be shuffled by 4
        ((1, 4, 4, 1), [4]),
        ((9, 8, 8, 130), [2, 4, 2, 2, 4, 4, 2, 4, 2]),  # 16C = 2080: several channel blocks
    ],
)
def test_matches_internvl_pixel_shuffle_per_tile(
    backend: str, dtype: torch.dtype, shape: tuple[int, ...], rates: list[int]
) -> None:
    features = torch.randn(shape).to(DEVICE, dtype)
    route = torch.tensor(rates, device=DEVICE)
    packed = compress_tiles(features, route)
    expected = per_tile(features, route)
    assert torch.equal(
        packed.by2, torch.cat([e for e, r in zip(expected, rates, strict=True) if r == 2] or [packed.by2])
    )
    assert torch.equal(
        packed.by4, torch.cat([e for e, r in zip(expected, rates, strict=True) if r == 4] or [packed.by4])
    )
    assert packed.by2.shape[1] == 4 * shape[3] and packed.by4.shape[1] == 16 * shape[3]
    assert packed.offsets.tolist() == [0, *torch.tensor([len(e) for e in expected]).cumsum(0).tolist()]


def test_merge_lays_projected_rows_back_in_tile_order(backend: str) -> None:
    features, rates = torch.randn(6, 8, 8, 4, device=DEVICE), torch.tensor([4, 2, 2, 4, 2, 4], device=DEVICE)
    packed = compress_tiles(features, rates)
    project2, project4 = torch.nn.Linear(16, 5, device=DEVICE), torch.nn.Linear(64, 5, device=DEVICE)
    merged = packed.merge(project2(packed.by2), project4(packed.by4))
    expected = torch.cat(
        [
            (project2 if int(r) == 2 else project4)(e)
            for e, r in zip(per_tile(features, rates), rates, strict=True)
        ]
    )
    torch.testing.assert_close(merged, expected)
    assert merged.shape == (int(packed.offsets[-1]), 5)


@pytest.mark.parametrize(
    ("shape", "rates", "message"),
    [
        ((2, 8, 8, 3), [2, 3], "rates must each be one of"),
        ((2, 6, 6, 3), [2, 4], "6x6 tile cannot be shuffled by 4"),
        ((2, 8, 8, 3), [2], "want features"),
        ((8, 8, 3), [2], "want features"),
    ],
)
def test_bad_routes_are_named(shape: tuple[int, ...], rates: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compress_tiles(torch.zeros(shape), torch.tensor(rates))
