"""Preference pairs: prompt + answer + EOS, answer masks aligned with the next-token targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmop.workloads.pretrain.data import ByteTokenizer
from vlmop.workloads.rl.preference import Pairs, collate


def write(path: Path, *records: dict[str, str]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records))
    return path


def test_answer_masks_cover_exactly_the_answer_targets(tmp_path: Path) -> None:
    pairs = Pairs(
        write(tmp_path / "p.jsonl", {"prompt": "ab", "chosen": "xyz", "rejected": "q"}), ByteTokenizer(), 64
    )
    batch = collate([pairs[0]], pad_id=0)
    ids, mask = batch["input_ids"], batch["answer_mask"]
    # chosen: BOS a b x y z EOS (7); rejected: BOS a b q EOS (5, padded to 7)
    assert ids.shape == (2, 7) and batch["attention_mask"].sum(-1).tolist() == [7, 5]
    targets = ids[:, 1:]
    assert targets[0][mask[0].bool()].tolist() == [*(b + 3 for b in b"xyz"), 2]
    assert targets[1][mask[1].bool()].tolist() == [ord("q") + 3, 2]


def test_long_prompts_are_cut_from_the_left_keeping_the_answer(tmp_path: Path) -> None:
    record = {"prompt": "p" * 100, "chosen": "yes", "rejected": "no"}
    pair = Pairs(write(tmp_path / "p.jsonl", record), ByteTokenizer(), 16)[0]
    assert len(pair.chosen) == 16 and pair.chosen[-4:].tolist() == [*(b + 3 for b in b"yes"), 2]


def test_a_record_without_its_fields_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"p.jsonl:2: a preference pair needs \['rejected'\]"):
        Pairs(write(tmp_path / "p.jsonl", {"prompt": "a", "chosen": "b", "rejected": "c"},
                    {"prompt": "a", "chosen": "b"}), ByteTokenizer(), 16)  # fmt: skip
