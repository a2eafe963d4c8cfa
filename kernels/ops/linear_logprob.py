"""Fused linear log-prob: log softmax(H Wᵀ / T)[target] per token (and, optionally, the entropy of
that softmax) with its backward, never holding the NxV logits.

Tokens are processed in chunks whose logits (chunkxV) are about the size of H itself. Per chunk the
matmul is torch's (cuBLAS on a GPU); a Triton kernel then makes one pass over each row (online
log-sum-exp, gather of the target, running Σ p·z for the entropy) and, in backward, rewrites the chunk
in place as the logits' gradient. Backward recomputes each chunk's logits rather than keeping them:
one more matmul per chunk buys O(chunkxV) memory instead of O(NxV). Without Triton (CPU, no
interpreter) the same chunks run through torch ops.

Used by the MPO and GSPO trainers for policy and reference log-probs; entropy is for monitoring and
entropy bonuses."""

from __future__ import annotations

from typing import Any

import torch

from vlmop.kernels import backend

try:
    import triton
    import triton.language as tl
except ImportError:  # the torch path still runs
    triton = None

IGNORE_INDEX = -100
MIN_CHUNK_ROWS = 256


def linear_logprob(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    *,
    ignore_index: int = IGNORE_INDEX,
    return_entropy: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs (float32, shaped like `targets`; 0 where target == ignore_index) of
    `targets` under softmax(hidden @ weight.T / temperature), and the entropy when asked."""
    if hidden.shape[:-1] != targets.shape or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)} and targets "
            f"{tuple(targets.shape)} do not agree: want (..., d), (V, d) and (...)"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    chunk = chunk_size or default_chunk(flat_hidden.shape[0], flat_hidden.shape[1], weight.shape[0])
    logp, entropy = _LinearLogProb.apply(  # type: ignore[no-untyped-call]
        flat_hidden, weight, flat_targets, 1.0 / temperature, ignore_index, chunk
    )
    logp = logp.view(targets.shape)
    return (logp, entropy.view(targets.shape)) if return_entropy else logp


def naive_linear_logprob(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: full logits, float32 log_softmax; (log-probs, entropy)."""
    logits = (hidden @ weight.T).float() / temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    valid = targets != ignore_index
    picked = logprobs.gather(-1, torch.where(valid, targets, 0).unsqueeze(-1)).squeeze(-1)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    return torch.where(valid, picked, 0.0), entropy


def default_chunk(tokens: int, dim: int, vocab: int) -> int:
    """Tokens per chunk: a chunk's logits hold about as many elements as the hidden states (Liger's
    rule), but at least 256 rows: every chunk streams all of W through the matmul, and thinner chunks
    turn it memory-bound (27-row chunks at V = 152k ran 2.2x slower than the naive path on CPU)."""
    return max(1, min(tokens, max(MIN_CHUNK_ROWS, tokens * dim // vocab)))


class _LinearLogProb(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        inv_t: float,
        ignore_index: int,
        chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = hidden.shape[0]
        logp, lse, entropy = (torch.empty(n, device=hidden.device, dtype=torch.float32) for _ in range(3))
        fused = backend.triton_runs(hidden, weight)
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            logits = hidden[rows] @ weight.T
            stats = (logits, targets[rows], inv_t, ignore_index, logp[rows], lse[rows], entropy[rows])
            (_row_stats_triton if fused else _row_stats_torch)(*stats)
        ctx.save_for_backward(hidden, weight, targets, lse, lse - entropy)  # lse - H = E_p[z]
        ctx.inv_t, ctx.ignore_index, ctx.chunk, ctx.fused = inv_t, ignore_index, chunk, fused
        return logp, entropy

    @staticmethod
    def backward(
        ctx: Any, grad_logp: torch.Tensor | None, grad_entropy: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, targets, lse, mean_z = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight) if need_weight else None
        zeros = torch.zeros_like(lse)
        grad_logp = zeros if grad_logp is None else grad_logp.contiguous()
        grad_entropy = zeros if grad_entropy is None else grad_entropy.contiguous()
        n = hidden.shape[0]
        for start in range(0, n, ctx.chunk):
            rows = slice(start, min(start + ctx.chunk, n))
            logits = hidden[rows] @ weight.T  # recomputed, then overwritten with its gradient
            args = (logits, targets[rows], ctx.inv_t, ctx.ignore_index, lse[rows], mean_z[rows])
            (_row_grad_triton if ctx.fused else _row_grad_torch)(*args, grad_logp[rows], grad_entropy[rows])
            if grad_hidden is not None:
                torch.mm(logits, weight, out=grad_hidden[rows])
            if grad_weight is not None:
                grad_weight.addmm_(logits.T, hidden[rows])
        return grad_hidden, grad_weight, None, None, None, None


# ---- torch path (no Triton) ----


def _row_stats_torch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    inv_t: float,
    ignore_index: int,
    logp: torch.Tensor,
    lse: torch.Tensor,
    entropy: torch.Tensor,
) -> None:
    z = logits.float()  # the chunk is ours: float32 chunks are scaled in place, no copy
    if inv_t != 1.0:
        z.mul_(inv_t)
    torch.logsumexp(z, dim=-1, out=lse)
    valid = targets != ignore_index
    picked = z.gather(1, torch.where(valid, targets, 0).unsqueeze(1)).squeeze(1)
    logp.copy_(torch.where(valid, picked - lse, 0.0))
    log_p = z.sub_(lse.unsqueeze(1))
    torch.sum(-(log_p.exp() * log_p), dim=-1, out=entropy)


def _row_grad_torch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    inv_t: float,
    ignore_index: int,
    lse: torch.Tensor,
    mean_z: torch.Tensor,
    grad_logp: torch.Tensor,
    grad_entropy: torch.Tensor,
) -> None:
    # d logp_t / dz = onehot(t) - p ;  d H / dz = -p (z - E_p[z]) ;  dz/dx = 1/T
    valid = targets != ignore_index
    grad_logp = torch.where(valid, grad_logp, 0.0).unsqueeze(1)
    z = logits.float()
    if inv_t != 1.0:
        z.mul_(inv_t)
    weight = (z - mean_z.unsqueeze(1)).mul_(-grad_entropy.unsqueeze(1)).sub_(grad_logp)
    grad = z.sub_(lse.unsqueeze(1)).exp_().mul_(weight)  # p · (-g_logp - g_H (z - E[z]))
    rows = torch.arange(len(targets), device=logits.device)[valid]
    grad[rows, targets[valid]] += grad_logp[valid, 0]
    if inv_t != 1.0:
        grad.mul_(inv_t)
    if grad is not logits:
        logits.copy_(grad)


# ---- Triton path: one program per row, BLOCK columns at a time ----

BLOCK = 1024


def _row_stats_triton(
    logits: torch.Tensor,
    targets: torch.Tensor,
    inv_t: float,
    ignore_index: int,
    logp: torch.Tensor,
    lse: torch.Tensor,
    entropy: torch.Tensor,
) -> None:
    rows, vocab = logits.shape
    _stats_kernel[(rows,)](
        logits, logits.stride(0), targets, logp, lse, entropy, vocab, inv_t, ignore_index, BLOCK=BLOCK
    )


def _row_grad_triton(
    logits: torch.Tensor,
    targets: torch.Tensor,
    inv_t: float,
    ignore_index: int,
    lse: torch.Tensor,
    mean_z: torch.Tensor,
    grad_logp: torch.Tensor,
    grad_entropy: torch.Tensor,
) -> None:
    rows, vocab = logits.shape
    _grad_kernel[(rows,)](
        logits, logits.stride(0), targets, lse, mean_z, grad_logp, grad_entropy,
        vocab, inv_t, ignore_index, BLOCK=BLOCK,
    )  # fmt: skip


if triton is not None:

    @triton.jit
    def _stats_kernel(
        logits, stride, targets, logp_out, lse_out, entropy_out, vocab, inv_t, ignore_index,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0).to(tl.int64)
        base = logits + row * stride
        peak = tl.full((), float("-inf"), tl.float32)  # running max
        total = tl.full((), 0.0, tl.float32)  # Σ exp(z - peak)
        weighted = tl.full((), 0.0, tl.float32)  # Σ exp(z - peak) · z
        for start in range(0, vocab, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < vocab
            z = tl.load(base + cols, mask=mask, other=float("-inf")).to(tl.float32) * inv_t
            new_peak = tl.maximum(peak, tl.max(z, axis=0))
            rescale = tl.exp(peak - new_peak)
            e = tl.exp(z - new_peak)
            total = total * rescale + tl.sum(e, axis=0)
            weighted = weighted * rescale + tl.sum(e * tl.where(mask, z, 0.0), axis=0)
            peak = new_peak
        lse = peak + tl.log(total)
        target = tl.load(targets + row)
        valid = target != ignore_index
        picked = tl.load(base + tl.where(valid, target, 0)).to(tl.float32) * inv_t
        tl.store(lse_out + row, lse)
        tl.store(logp_out + row, tl.where(valid, picked - lse, 0.0))
        tl.store(entropy_out + row, lse - weighted / total)

    @triton.jit
    def _grad_kernel(
        logits, stride, targets, lse_in, mean_z_in, grad_logp_in, grad_entropy_in, vocab, inv_t,
        ignore_index, BLOCK: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0).to(tl.int64)
        base = logits + row * stride
        lse = tl.load(lse_in + row)
        mean_z = tl.load(mean_z_in + row)
        target = tl.load(targets + row)
        g_logp = tl.where(target != ignore_index, tl.load(grad_logp_in + row), 0.0)
        g_entropy = tl.load(grad_entropy_in + row)
        for start in range(0, vocab, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < vocab
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32) * inv_t
            p = tl.exp(z - lse)
            grad = -p * (g_logp + g_entropy * (z - mean_z)) + tl.where(cols == target, g_logp, 0.0)
            tl.store(base + cols, (grad * inv_t).to(logits.dtype.element_ty), mask=mask)
