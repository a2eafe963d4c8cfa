"""The trainer's pure parts without DeepSpeed: data order, packing, checkpoint bookkeeping, LR schedule,
and the progress contract between rank 0 and the operator."""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmop.operator import progress
from vlmop.workloads.common import checkpoint
from vlmop.workloads.common.progress import Progress, Reporter
from vlmop.workloads.pretrain import data, models, trainer
from vlmop.workloads.pretrain.config import parse
from vlmop.workloads.pretrain.trainer import schedule


def test_order_is_addressed_by_step_disjoint_across_ranks_and_reshuffled_per_epoch() -> None:
    order = data.Order(size=20, seed=7, micro=2, accumulation=2, world=2)
    step0 = [i for r in range(2) for mb in order.micro_batches(0, r) for i in mb]
    assert len(step0) == len(set(step0)) == 8
    assert order.micro_batches(3, 1) == data.Order(20, 7, 2, 2, 2).micro_batches(3, 1)  # no hidden state
    epoch0 = [order.index(p) for p in range(20)]
    epoch1 = [order.index(p) for p in range(20, 40)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(20)) and epoch0 != epoch1


def test_packing_joins_documents_with_eos_and_cuts_full_sequences(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(3, 13))
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "hi"}) + "\n")
    packed = data.load(tmp_path, "text", 4, True, data.ByteTokenizer())
    assert len(packed) == 3  # 10 + eos + 2 + eos = 14 tokens -> 3 sequences of 4
    assert packed[2]["input_ids"].tolist() == [11, 12, 2, ord("h") + 3]  # 2 leftover tokens dropped
    unpacked = data.load(tmp_path, "text", 4, False, data.ByteTokenizer())
    second = unpacked[1]
    assert second["labels"].tolist() == [ord("h") + 3, ord("i") + 3, -100, -100]
    assert second["attention_mask"].tolist() == [1, 1, 0, 0]


def test_image_text_masks_image_tokens_and_normalises_pixels(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.full((8, 8, 3), 255, dtype=np.uint8))
    (tmp_path / "p.jsonl").write_text(json.dumps({"image": "x.npy", "text": "ok"}))
    vision = {"image_token": 300, "image_tokens": 4, "image_size": 4}
    sample = data.load(tmp_path, "image-text", 10, True, data.ByteTokenizer(), vision)[0]
    assert sample["input_ids"][:5].tolist() == [1, 300, 300, 300, 300]
    assert sample["labels"][1:5].tolist() == [-100] * 4 and sample["labels"][5] == ord("o") + 3
    assert sample["pixel_values"].shape == (1, 3, 4, 4) and torch.allclose(
        sample["pixel_values"], torch.ones(1)
    )
    with pytest.raises(ValueError, match="vision-language model"):
        data.load(tmp_path, "image-text", 10, True, data.ByteTokenizer())


def test_image_text_pairs_pack_whole_with_their_images_in_order(tmp_path: Path) -> None:
    for i in range(3):
        np.save(tmp_path / f"{i}.npy", np.full((4, 4, 3), 60 * i, dtype=np.uint8))
    rows = [{"image": f"{i}.npy", "text": "ab"} for i in range(3)]  # 1 + 2 + 2 + 1 = 6 tokens each
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    vision = {"image_token": 300, "image_tokens": 2, "image_size": 4}
    packed = data.load(tmp_path, "image-text", 13, True, data.ByteTokenizer(), vision)
    assert len(packed) == 2  # 6 + 6 fit in 13; the third pair starts the next sequence
    first = packed[0]
    assert first["input_ids"].tolist() == [1, 300, 300, 100, 101, 2, 1, 300, 300, 100, 101, 2, 0]
    assert first["pixel_values"].shape == (2, 3, 4, 4)
    assert first["pixel_values"][1].mean() > first["pixel_values"][0].mean()  # images keep their order
    batch = data.collate([packed[0], packed[1]])
    assert batch["input_ids"].shape == (2, 13) and batch["pixel_values"].shape == (3, 3, 4, 4)
    assert len(data.load(tmp_path, "image-text", 13, False, data.ByteTokenizer(), vision)) == 3


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="fewer than one sequence"):
        data.load(tmp_path, "text", 64, True, data.ByteTokenizer())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \.npy/\.txt/\.jsonl files"):
        data.load(tmp_path / "empty", "text", 64, True, data.ByteTokenizer())


def test_only_complete_checkpoints_count_and_old_ones_are_pruned(tmp_path: Path) -> None:
    store = checkpoint.Store(tmp_path)
    for step in (4, 8, 12, 16):
        (tmp_path / checkpoint.tag(step)).mkdir()
    for step in (4, 8, 12):
        store.mark_complete(tmp_path / checkpoint.tag(step), {"step": step})
    assert store.latest() == tmp_path / "step-00000012"  # 16 died mid-save: not trusted
    assert store.resolve("none") is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        store.resolve(str(tmp_path / "step-00000016"))
    removed = store.prune(keep=2)
    assert [p.name for p in removed] == ["step-00000004"]
    assert [p.name for p in store.complete()] == ["step-00000008", "step-00000012"]
    assert (tmp_path / "step-00000016").exists()  # newer than the latest complete: maybe in progress
    assert checkpoint.state(tmp_path / "step-00000012") == {"step": 12}


def test_rng_round_trips_through_json(tmp_path: Path) -> None:
    torch.manual_seed(1)
    random.seed(1)
    checkpoint.save_rng(tmp_path, 0)
    expected = (torch.rand(3), random.random())  # noqa: S311 - checking RNG state, not crypto
    torch.manual_seed(99)
    random.seed(99)
    assert checkpoint.load_rng(tmp_path, 0)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]  # noqa: S311
    assert not checkpoint.load_rng(tmp_path, 5)


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    cfg = parse(
        ["--data", "x", "--lr", "1.0", "--min-lr", "0.1", "--warmup-steps", "4", "--total-steps", "14"]
    )
    f = schedule(cfg)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(14) == pytest.approx(0.1) and f(9) == pytest.approx(0.55)
    assert schedule(parse(["--data", "x", "--lr-schedule", "constant"]))(500) == 1.0


def test_schedule_counts_updates_when_a_step_holds_several() -> None:
    cfg = parse(
        ["--data", "x", "--lr", "1.0", "--min-lr", "0.1", "--warmup-steps", "4", "--total-steps", "14"]
    )
    per_step, three = schedule(cfg), schedule(cfg, updates_per_step=3)
    assert [three(u) for u in (2, 5, 8, 11)] == [per_step(s) for s in range(4)]  # each step's last update
    assert three(9 * 3) == pytest.approx(per_step(9)) and three(14 * 3) == pytest.approx(0.1)


def test_progress_contract_between_trainer_and_operator() -> None:
    report = Progress(
        step=5, total_steps=10, loss=2.5, tokens_per_second=100.0, latest_checkpoint="/c/step-5"
    )
    parsed = progress.parse(json.dumps(report.to_json()))
    assert parsed == {
        "step": 5,
        "totalSteps": 10,
        "loss": 2.5,
        "tokensPerSecond": 100.0,
        "latestCheckpoint": "/c/step-5",
    }
    assert progress.summary(parsed) == "5/10 steps (50%)"
    for junk in ("not json", "[1, 2]", '{"step": "five"}', '{"loss": NaN}', b"\xff\xfe"):
        assert progress.parse(junk) is None
    assert progress.parse(json.dumps({"step": 1, "latestCheckpoint": "x" * 5000})) == {"step": 1}
    # A trainer resumed at its last step used to say 0/0 beside its checkpoint: no position, the
    # checkpoint still taken; nor is a step past the end.
    resumed = {"step": 0, "totalSteps": 0, "latestCheckpoint": "/c/step-120"}
    assert progress.parse(json.dumps(resumed)) == {"latestCheckpoint": "/c/step-120"}
    assert progress.parse(json.dumps({"step": 130, "totalSteps": 120, "loss": 1.0})) == {"loss": 1.0}
    assert progress.parse(json.dumps({"step": 0, "totalSteps": 120})) == {"step": 0, "totalSteps": 120}


def test_a_resumed_reporter_says_where_the_run_stands_before_its_first_step() -> None:
    reporter = Reporter()
    reporter.checkpointed(120, "/c/step-120")
    reporter.resumed(120, 120)  # resumed at the last step: no step left to take
    assert progress.parse(json.dumps(reporter.snapshot())) == {
        "step": 120, "totalSteps": 120, "latestCheckpoint": "/c/step-120"}  # fmt: skip


def test_rl_figures_reach_the_operator_bounded() -> None:
    figures = {"meanRewardBySource": {"gsm8k": 0.5, "sorting": 1}, "clipFraction": 0.125, "policyVersion": 7}
    parsed = progress.parse(json.dumps(Progress(step=7, total_steps=9, extra=figures).to_json()))
    assert parsed == {"step": 7, "totalSteps": 9, **figures}
    junk = {"gsm8k": "high", "x" * 64: 1.0, "nan": float("nan")}  # each bad entry is left out
    assert progress.parse(json.dumps({"step": 1, "meanRewardBySource": junk})) == {"step": 1}
    many = {f"s{i}": 0.0 for i in range(65)}  # more sources than status should hold
    assert progress.parse(json.dumps({"step": 1, "meanRewardBySource": many})) == {"step": 1}


def test_reward_tallies_reach_the_operator_whole_or_not_at_all() -> None:
    tally = {"scored": 60, "failed": 3, "timedOut": 1, "fullScoreShare": 0.25, "meanReward": 0.3}
    parsed = progress.parse(json.dumps({"step": 2, "rewardsByVerifier": {"math": tally, "judge": tally}}))
    assert parsed == {"step": 2, "rewardsByVerifier": {"math": tally, "judge": tally}}
    for bad in (
        {**tally, "scored": -1},
        {**tally, "failed": 1.5},
        {**tally, "timedOut": True},
        {**tally, "meanReward": "high"},
        {k: v for k, v in tally.items() if k != "failed"},
        [1, 2],
    ):
        reported = {"math": tally, "judge": bad}  # one unreadable tally and the field is left out
        assert progress.parse(json.dumps({"step": 2, "rewardsByVerifier": reported})) == {"step": 2}
    many = {f"v{i}": tally for i in range(65)}
    assert progress.parse(json.dumps({"step": 2, "rewardsByVerifier": many})) == {"step": 2}


def test_rollout_urls_expand_to_every_replica() -> None:
    from vlmop.workloads.rl.rollout import endpoints

    assert endpoints(["http://127.0.0.1:8000"]) == ["http://127.0.0.1:8000"]
    # localhost stands for a headless Service: one URL per address it resolves to.
    expanded = endpoints(["http://localhost:8000/"])
    assert "http://127.0.0.1:8000/" in expanded and all(u.endswith(":8000/") for u in expanded)
    assert endpoints(["http://no-such-host.invalid:8000"]) == ["http://no-such-host.invalid:8000"]


def test_reporter_serves_metrics_and_progress() -> None:
    import urllib.request

    reporter = Reporter()
    port = reporter.serve(0, "127.0.0.1")
    try:
        reporter.update(Progress(step=3, total_steps=9, loss=1.25), tokens=300)
        assert progress.read("127.0.0.1", port) == {"step": 3, "totalSteps": 9, "loss": 1.25}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'vlmop_train_step{job="pretrain"} 3.0' in text and "vlmop_train_tokens_total" in text
        assert "vlmop_train_moe" not in text  # a dense run has no routing figures
        moe = {"auxLoss": 1.07, "expertLoadImbalance": 1.5}
        reporter.update(Progress(step=4, total_steps=9, loss=1.2, extra=moe), tokens=400)
        assert progress.read("127.0.0.1", port) == {"step": 4, "totalSteps": 9, "loss": 1.2, **moe}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'vlmop_train_moe_aux_loss{job="pretrain"} 1.07' in text
        assert 'vlmop_train_moe_expert_load_imbalance{job="pretrain"} 1.5' in text
    finally:
        reporter.close()
    assert progress.read("127.0.0.1", port, timeout=0.5) is None  # gone: the operator just skips it


def test_every_preset_the_api_admits_can_be_built() -> None:
    from vlmop.operator.api.training import MOE_PRESET_EXPERTS
    from vlmop.workloads.pretrain import models, moe

    for name in models.PRESETS:
        config = models.preset_config(name)
        assert config.model_type in ("llama", "llava", "qwen2", "qwen3", "qwen3_moe")
        assert MOE_PRESET_EXPERTS.get(name) == (config.num_experts if moe.is_moe(config) else None)
    with pytest.raises(ValueError, match="unknown model preset"):
        models.preset_config("gpt-9")


def test_a_checkpoint_request_is_asked_once_per_attempt_and_followed_to_saved() -> None:
    entry, ask = progress.checkpoint_request("drain-1", None, None, 0)
    assert (entry, ask) == ({"token": "drain-1"}, True)
    requested = {"token": "drain-1", "state": "Requested", "attempt": 0}
    assert progress.checkpoint_request("drain-1", requested, {"step": 7}, 0) == (requested, False)
    assert progress.checkpoint_request("drain-1", requested, None, 1)[1]  # restarted before saving: ask again
    found = {"step": 9, "latestCheckpoint": "/c/step-9", "checkpointRequest": "drain-1"}
    saved, ask = progress.checkpoint_request("drain-1", requested, found, 0)
    assert saved == {**requested, "state": "Saved", "step": 9, "checkpoint": "/c/step-9"} and not ask
    assert progress.checkpoint_request("drain-2", saved, found, 0) == (
        {"token": "drain-2"},
        True,
    )  # a new one
    assert progress.checkpoint_request(None, saved, None, 0) == (saved, False)  # annotation gone: kept


def test_rank0_takes_a_checkpoint_request_and_refuses_junk() -> None:
    reporter = Reporter()
    port = reporter.serve(0, "127.0.0.1")
    try:
        assert progress.ask_checkpoint("127.0.0.1", port, "before-drain")
        assert reporter.take_request() == "before-drain" and reporter.take_request() is None
        for body in (b"not json", b'{"token": "has space"}', b'{"token": 5}', b"[]"):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/checkpoint", body, method="POST")
            with pytest.raises(urllib.error.HTTPError, match="400"):
                urllib.request.urlopen(request, timeout=5)  # noqa: S310 - a local test server
        assert reporter.take_request() is None
        reporter.request_saved("before-drain")
        reporter.update(Progress(step=3, total_steps=10))  # a later step keeps saying it was saved
        assert progress.parse(json.dumps(reporter.snapshot()))["checkpointRequest"] == "before-drain"
    finally:
        reporter.close()


def test_a_build_lock_left_by_a_killed_build_is_cleared_a_live_one_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SIGKILLed `vlmop local` run once left torch's build lock behind: every later trainer on the
    # machine waited for it forever at DeepSpeed's init.
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    lock = tmp_path / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir()
    lock.touch()
    assert not trainer.clear_stale_build_lock("deepspeed_shm_comm") and lock.exists()  # a build under way
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    assert trainer.clear_stale_build_lock("deepspeed_shm_comm") and not lock.exists()
    assert not trainer.clear_stale_build_lock("deepspeed_shm_comm")  # none: nothing to do


@pytest.mark.parametrize("preset", ["tiny", "tiny-vl"])
def test_a_model_built_for_a_resume_skips_init_but_keeps_buffers(preset: str, tmp_path: Path) -> None:
    """weights=False (a resume: the checkpoint holds every weight) builds the same structure with the
    same computed buffers (RoPE's), and once loaded computes what the original does; from a path too."""
    torch.manual_seed(0)
    start = models.build(preset, None)
    start.save_pretrained(tmp_path, safe_serialization=True)
    for empty in (models.build(preset, None, weights=False), models.build(None, tmp_path, weights=False)):
        assert {k: v.shape for k, v in empty.state_dict().items()} == {
            k: v.shape for k, v in start.state_dict().items()
        }
        mine, theirs = dict(empty.named_buffers()), dict(start.named_buffers())
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        empty.load_state_dict(start.state_dict())
        if preset == "tiny":  # (tiny-vl's forward needs images: its state, above, is the whole of it)
            ids = torch.randint(0, 258, (1, 8))
            assert torch.allclose(empty(input_ids=ids).logits, start(input_ids=ids).logits)
