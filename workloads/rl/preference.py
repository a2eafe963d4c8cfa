"""Preference pairs for MPO: JSONL records {"prompt", "chosen", "rejected"} (an optional "source" is
kept), tokenised as prompt + answer with a mask over the answer tokens, and batched chosen-then-
rejected so one forward pass serves both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vlmop.workloads.pretrain.data import Tokenizer, jsonl_records


@dataclass(frozen=True)
class Pair:
    chosen: torch.Tensor  # prompt + chosen answer ids
    chosen_start: int  # index of the first answer token
    rejected: torch.Tensor
    rejected_start: int


class Pairs:
    def __init__(self, path: Path, tokenizer: Tokenizer, seq_length: int) -> None:
        self.pairs: list[Pair] = []
        self.pad_id = tokenizer.pad_id
        for where, record in jsonl_records(path):
            missing = {"prompt", "chosen", "rejected"} - record.keys()
            if missing:
                raise ValueError(f"{where}: a preference pair needs {sorted(missing)}")
            prompt = [tokenizer.bos_id, *tokenizer.encode(record["prompt"])]
            chosen, c_start = _join(prompt, tokenizer.encode(record["chosen"]), tokenizer, seq_length)
            rejected, r_start = _join(prompt, tokenizer.encode(record["rejected"]), tokenizer, seq_length)
            self.pairs.append(Pair(chosen, c_start, rejected, r_start))
        if not self.pairs:
            raise ValueError(f"no preference pairs under {path}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Pair:
        return self.pairs[index]


def _join(prompt: list[int], answer: list[int], tokenizer: Tokenizer, limit: int) -> tuple[torch.Tensor, int]:
    """prompt + answer + EOS, keeping the answer: the prompt is cut from the left when too long."""
    answer = [*answer, tokenizer.eos_id][: max(limit // 2, limit - len(prompt))]
    prompt = prompt[-(limit - len(answer)) :]
    return torch.tensor(prompt + answer, dtype=torch.long), len(prompt)


def collate(pairs: list[Pair], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids/attention_mask (2B, L) with the B chosen first, and answer_mask (2B, L-1) over the
    targets (the next tokens) that belong to the answer."""
    sequences = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    starts = [p.chosen_start for p in pairs] + [p.rejected_start for p in pairs]
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    answer = torch.zeros((len(sequences), length - 1), dtype=torch.float32)
    for row, (sequence, start) in enumerate(zip(sequences, starts, strict=True)):
        ids[row, : len(sequence)] = sequence
        attention[row, : len(sequence)] = 1
        answer[row, start - 1 : len(sequence) - 1] = 1.0  # target t+1 is predicted at position t
    return {"input_ids": ids, "attention_mask": attention, "answer_mask": answer}
