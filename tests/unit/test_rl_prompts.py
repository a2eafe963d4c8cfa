"""GSPO's prompts: JSONL records from --data, else cases generated from --task, the same on every rank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmop.workloads.rl.gspo import GSPOTrainConfig, Prompts, parse


def test_jsonl_records_carry_source_text_and_gold(tmp_path: Path) -> None:
    records = [
        {"prompt": "2+2?", "source": "gsm8k", "answer": "4"},
        {"prompt": "add", "source": "mbpp", "tests": ["assert add(1, 1) == 2"]},
        {"prompt": "sort", "source": "bootcamp-sorting", "case": {"numbers": [2, 1]}},
    ]
    (tmp_path / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    prompts = Prompts(GSPOTrainConfig(data=tmp_path))
    assert [(p.source, p.text, p.gold) for p in prompts.items] == [
        ("gsm8k", "2+2?", "4"),
        ("mbpp", "add", ["assert add(1, 1) == 2"]),
        ("bootcamp-sorting", "sort", {"numbers": [2, 1]}),
    ]


def test_a_record_without_a_source_is_named(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "x"}))
    with pytest.raises(ValueError, match=r'p.jsonl:1: a prompt record needs "prompt" and "source"'):
        Prompts(GSPOTrainConfig(data=tmp_path / "p.jsonl"))


def test_without_data_the_tasks_generate_the_same_prompts_everywhere() -> None:
    cfg = parse(["--rollout-url", "http://x", "--weights-dir", "/w", "--task", "sorting", "--task", "letters",
                 "--cases", "10"])  # fmt: skip
    first, again = Prompts(cfg), Prompts(cfg)
    assert len(first) == 10 and [p.source for p in first.items[:4]] == ["sorting", "letters"] * 2
    assert [p.text for p in first.items] == [p.text for p in again.items]
