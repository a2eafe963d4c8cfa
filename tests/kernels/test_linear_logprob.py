"""Fused linear log-prob against the full-logits float32 reference: outputs and gradients, on the
Triton kernels (compiled on a GPU, the interpreter on CPU) and on the torch chunked path, over odd
shapes."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from vlmop.kernels.ops.linear_logprob import linear_logprob, naive_linear_logprob

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (tokens, hidden, vocab): N not a multiple of any block, d not a power of two, V like 151,674 scaled
# down (odd, larger than one 1024-column block) and smaller than one block.
SHAPES = [(37, 48, 1517), (1, 8, 17), (130, 33, 4099)]
# bf16 rounds the logits chunk (forward) and its gradient (backward) to 8 bits of mantissa.
TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (2e-2, 3e-2)}  # (outputs, gradients) rel


def inputs(n: int, d: int, v: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).to(DEVICE, dtype).requires_grad_()
    weight = (torch.randn(v, d, generator=g) / d**0.5).to(DEVICE, dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=g)
    targets[::5] = -100  # ignored positions (prompt tokens, padding)
    upstream = (torch.randn(n, generator=g).to(DEVICE) for _ in range(2))
    return hidden, weight, targets.to(DEVICE), *upstream


def close(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    scale = expected.abs().max().clamp_min(1.0)
    error = (actual.float() - expected.float()).abs().max()
    assert error <= rel * scale, f"max error {error:.3g} > {rel:g} x {scale:.3g}"


def grads(*tensors: torch.Tensor) -> list[torch.Tensor]:
    out = [t.grad.clone() for t in tensors if t.grad is not None]
    for t in tensors:
        t.grad = None
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_reference_with_gradients(
    backend: str, dtype: torch.dtype, shape: tuple[int, int, int], temperature: float
) -> None:
    hidden, weight, targets, g_logp, g_entropy = inputs(*shape, dtype)
    logp, entropy = linear_logprob(hidden, weight, targets, temperature, return_entropy=True, chunk_size=16)
    assert logp.dtype == torch.float32 and logp.shape == targets.shape
    (logp * g_logp + entropy * g_entropy).sum().backward()
    fused_grads = grads(hidden, weight)

    # The reference runs in float32 on the same (possibly bf16-rounded) inputs.
    h32, w32 = (t.detach().float().requires_grad_() for t in (hidden, weight))
    ref_logp, ref_entropy = naive_linear_logprob(h32, w32, targets, temperature)
    (ref_logp * g_logp + ref_entropy * g_entropy).sum().backward()
    out_tol, grad_tol = TOLERANCE[dtype]
    close(logp, ref_logp, out_tol)
    close(entropy, ref_entropy, out_tol)
    assert bool((logp[targets == -100] == 0).all())
    for actual, expected in zip(fused_grads, grads(h32, w32), strict=True):
        assert actual.dtype == dtype
        close(actual, expected, grad_tol)


def test_chunk_size_does_not_change_the_result(backend: str) -> None:
    hidden, weight, targets, g_logp, _ = inputs(53, 40, 2051, torch.float32)
    results = []
    for chunk in (1, 7, 53, 1000):
        (linear_logprob(hidden, weight, targets, chunk_size=chunk) * g_logp).sum().backward()
        results.append(
            [linear_logprob(hidden, weight, targets, chunk_size=chunk).detach(), *grads(hidden, weight)]
        )
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_batched_input_and_a_frozen_reference_head(backend: str) -> None:
    hidden, weight, targets, _, _ = inputs(2 * 19, 24, 301, torch.float32)
    weight.requires_grad_(False)  # the reference model's head: no weight gradient is computed
    logp = linear_logprob(hidden.view(2, 19, 24), weight, targets.view(2, 19))
    assert logp.shape == (2, 19)
    logp.sum().backward()
    assert weight.grad is None and hidden.grad is not None
    ref, _ = naive_linear_logprob(hidden.detach(), weight, targets)
    close(logp.reshape(-1), ref, 1e-5)
    assert bool((hidden.grad[targets == -100] == 0).all())  # ignored tokens get no gradient


def test_entropy_alone_has_gradients(backend: str) -> None:
    hidden, weight, targets, _, g_entropy = inputs(21, 16, 97, torch.float32)
    _, entropy = linear_logprob(hidden, weight, targets, 1.3, return_entropy=True)
    (entropy * g_entropy).sum().backward()
    fused = grads(hidden, weight)
    _, ref = naive_linear_logprob(hidden, weight, targets, 1.3)
    (ref * g_entropy).sum().backward()
    for a, b in zip(fused, grads(hidden, weight), strict=True):
        close(a, b, 1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": torch.zeros(4, dtype=torch.long)}, "do not agree"),
        ({"weight": torch.zeros(9, 7)}, "do not agree"),
        ({"temperature": 0.0}, "temperature must be positive"),
    ],
)
def test_bad_shapes_and_temperature_are_named(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "hidden": torch.zeros(3, 8),
        "weight": torch.zeros(9, 8),
        "targets": torch.zeros(3, dtype=torch.long),
    }
    with pytest.raises(ValueError, match=message):
        linear_logprob(**{**args, **kwargs})
