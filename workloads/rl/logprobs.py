"""Per-token log-probs of a causal LM's own next tokens: through the fused linear log-prob on the
final hidden states (the N x V logits never exist), or from the logits when the LM head cannot be
read whole (ZeRO-3 partitions it; its forward hook gathers it only inside the model's forward)."""

from __future__ import annotations

from typing import Any

import torch

from vlmop.kernels import linear_logprob


def token_logps(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, fused: bool = True
) -> torch.Tensor:
    """(B, L) ids → (B, L-1) float32: log π(input_ids[:, t+1] | input_ids[:, :t+1])."""
    targets = input_ids[:, 1:]
    if fused:
        hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weight = model.get_output_embeddings().weight
        result: torch.Tensor = linear_logprob(hidden[:, :-1], weight, targets)  # type: ignore[assignment]
        return result
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
