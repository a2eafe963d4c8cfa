"""The DeepSpeed pretraining loop: build the model and data, resume from the newest complete
checkpoint, train, checkpoint every N steps (and on SIGTERM), and report progress from rank 0."""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers.modeling_layers import GradientCheckpointingLayer

from vlmop.workloads.common import checkpoint
from vlmop.workloads.common.progress import Progress, Reporter, write_termination_message
from vlmop.workloads.pretrain import cpu, data, models, moe
from vlmop.workloads.pretrain.config import TrainConfig

log = logging.getLogger("vlmop.pretrain")
STALE_BUILD_SECONDS = 600  # a JIT build of DeepSpeed's CPU op takes about a minute here
SIGTERM_EXIT = 143  # 128 + SIGTERM: the pod fails, so the operator restarts the group from the save
# Dense bf16 peak FLOP/s by device name, for the MFU estimate; VLMOP_PEAK_FLOPS overrides.
# Besides tokenizer*: what a Hugging Face tokenizer may need beside the weights.
# And the processor's configs, so a VLM's export stays servable by vLLM.
TOKENIZER_FILES = ("special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                   "chat_template.jinja", "preprocessor_config.json", "processor_config.json")  # fmt: skip
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def schedule(cfg: TrainConfig, updates_per_step: int = 1) -> Any:
    """LR multiplier per optimizer update: linear warm-up, then cosine/linear decay to min_lr (or
    constant). Warm-up and total are in steps; a step may hold several updates (GSPO's mini-batches)."""
    floor = cfg.min_lr / cfg.lr

    def factor(update: int) -> float:
        step = update / updates_per_step
        if step < cfg.warmup_steps:
            return (update + 1) / (cfg.warmup_steps * updates_per_step)
        if cfg.lr_schedule == "constant":
            return 1.0
        done = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * done)) if cfg.lr_schedule == "cosine" else 1 - done
        return floor + (1 - floor) * shape

    return factor


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only; biases and norms keep their scale (as in GPT-2/nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    matrix = [len(getattr(p, "ds_shape", p.shape)) >= 2 for p in params]  # ZeRO-3 params are flat
    groups = [
        {"params": [p for p, m in zip(params, matrix, strict=True) if m], "weight_decay": weight_decay},
        {"params": [p for p, m in zip(params, matrix, strict=True) if not m], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def peak_flops() -> float | None:
    if os.environ.get("VLMOP_PEAK_FLOPS"):
        return float(os.environ["VLMOP_PEAK_FLOPS"])
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def tolerate_missing_compiler() -> None:
    """On CPU, DeepSpeed JIT-compiles a shared-memory all-reduce at init and crashes without a C++
    compiler; gloo alone is correct (only slower), so a failed build falls back to it."""
    # By name: the attribute `deepspeed.comm.torch` is the torch package, not this module.
    backend: Any = importlib.import_module("deepspeed.comm.torch")
    build = backend.build_shm_op

    def build_or_skip() -> Any:
        clear_stale_build_lock("deepspeed_shm_comm")
        try:
            return build()
        except Exception as error:  # CalledProcessError, ImportError, RuntimeError from the JIT build
            log.warning("no shared-memory all-reduce (%s); using gloo only", error)
            return None

    backend.build_shm_op = build_or_skip


def clear_stale_build_lock(extension: str, older_than: float = STALE_BUILD_SECONDS) -> bool:
    """torch's JIT build waits, forever, for the `lock` file of a build in progress: a build that was
    killed (a SIGKILLed `vlmop local` run sharing this machine's cache) leaves it behind. A lock older
    than any build takes is removed; returns whether one was."""
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory(extension, verbose=False)) / "lock"
    try:
        if time.time() - lock.stat().st_mtime > older_than:
            lock.unlink()
            log.warning("removed a stale build lock %s (a build killed midway)", lock)
            return True
    except FileNotFoundError:
        pass
    return False


class Trainer:
    # Whether the starting model's weights matter beyond the first step (MPO's reference log-probs):
    # then a resume builds it whole before loading the checkpoint.
    needs_starting_weights = False

    def __init__(self, cfg: TrainConfig) -> None:
        import deepspeed

        self.cfg = cfg
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "gloo":
            tolerate_missing_compiler()
        deepspeed.init_distributed(dist_backend=backend)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        self.ds_config = cfg.deepspeed()
        self.stage3 = int(self.ds_config.get("zero_optimization", {}).get("stage", 0)) >= 3
        self._seed(cfg.seed)
        self.store = checkpoint.Store(cfg.checkpoint_dir)
        self.resume_from = self.store.resolve(cfg.resume_from)  # before the model: it is built for it
        # Under gloo, a collective that copies a large tensor on gloo's own thread (ZeRO-3 all-gathers
        # every parameter while building the model and again in deepspeed.initialize) gives that thread
        # an OpenMP team. Once libgomp manages more threads than cores it stops spinning at barriers,
        # and every parallel op of a step waits on a futex wake-up (2 cores: ~600 a step, 1.3x slower).
        # A thread sizes its team at its first parallel op: set up on one thread, then train on all.
        threads = torch.get_num_threads()
        if backend == "gloo":
            torch.set_num_threads(1)
        self.model = self._build_model()
        self.sparse_blocks = moe.blocks(self.model)
        if cfg.activation_checkpointing:  # transformers' own, per decoder layer (non-reentrant)
            self.model.activation_checkpointing_enable()  # type: ignore[operator]
            layers = sum(isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing
                         for m in self.model.modules())  # fmt: skip
            log.info("activation checkpointing: %d layers recompute their activations", layers)
        self.experts = cfg.moe() or moe.Experts()
        self.moe_stats: torch.Tensor | None = None  # the last step's, summed over ranks
        self.flops_per_token = models.flops_per_token(self.model, cfg.seq_length)
        self.data = self._build_data()
        cfg = self.cfg = self.planned(cfg)
        groups = param_groups(self.model, cfg.weight_decay)
        groups = moe.optimizer_groups(groups) if self.sparse_blocks else groups
        # Fused: one kernel for every parameter's update rather than a chain of per-tensor ops.
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=self.model,
            optimizer=optimizer,
            # Built on DeepSpeed's wrapped optimizer, whose param groups are the ones that step.
            lr_scheduler=lambda wrapped: torch.optim.lr_scheduler.LambdaLR(
                wrapped, schedule(cfg, self.updates_per_step())
            ),
            config=self.ds_config,
        )
        if backend == "gloo":
            torch.set_num_threads(threads)
            cpu.keep_freed_memory()
        self.order = data.Order(
            size=len(self.data),
            seed=cfg.seed,
            micro=self.engine.train_micro_batch_size_per_gpu(),
            accumulation=self.engine.gradient_accumulation_steps(),
            world=self.world,
        )
        self.step, self.tokens = 0, 0
        self.reporter = Reporter() if self.rank == 0 else None
        self.stop_requested = False
        self.save_requested: str | None = None  # rank 0: the token of a checkpoint asked for
        self.save_now = False  # every rank: this step ends with a save

    def _seed(self, seed: int) -> None:
        random.seed(seed)
        torch.manual_seed(seed)

    def _build_model(self) -> torch.nn.Module:
        # The same seed on every rank; under ZeRO-3 created partitioned (no rank holds the whole
        # model), else whole and partitioned by deepspeed.initialize as its stage says. A resume
        # reads every weight from the checkpoint: none is read before it.
        weights = self.resume_from is None or self.needs_starting_weights
        zero3 = self.ds_config if self.stage3 else None
        cfg = self.cfg
        return models.build(cfg.model_preset, cfg.model_path, weights=weights, zero3=zero3, experts=cfg.moe())

    def _build_data(self) -> data.Sequences:
        cfg, config = self.cfg, models.config_of(self.model)
        vision = None
        if models.is_vision(config):
            size, patch = config.vision_config.image_size, config.vision_config.patch_size
            vision = {
                "image_token": int(config.image_token_id),
                "image_tokens": (size // patch) ** 2,
                "image_size": size,
            }
        tokenizer = data.tokenizer_for(cfg.model_path)
        return data.load(cfg.data, cfg.data_format, cfg.seq_length, cfg.packing, tokenizer, vision)

    # -- checkpoints -------------------------------------------------------------------------

    def resume(self) -> Path | None:
        found = self.resume_from
        if found is None:
            return None
        self.engine.load_checkpoint(str(found.parent), tag=found.name)
        state = checkpoint.state(found)
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        self.load_extra_state(state)
        checkpoint.load_rng(found, self.rank)
        if self.reporter:
            self.reporter.checkpointed(self.step, str(found))
        log.info("resumed from %s at step %d", found, self.step)
        return found

    def save(self) -> Path:
        directory = self.cfg.checkpoint_dir / checkpoint.tag(self.step)
        self.engine.save_checkpoint(str(self.cfg.checkpoint_dir), tag=directory.name)
        checkpoint.save_rng(directory, self.rank)
        dist.barrier()  # every rank's shards and RNG are on disk before the marker
        if self.rank == 0:
            state = {
                "step": self.step,
                "tokens": self.tokens,
                "world_size": self.world,
                "config": asdict(self.cfg),
                **self.extra_state(),
            }
            self.store.mark_complete(directory, json.loads(json.dumps(state, default=str)))
            self.store.prune(self.cfg.keep_last)
            if self.reporter:
                self.reporter.checkpointed(self.step, str(directory))
        dist.barrier()
        return directory

    def export(self, directory: Path) -> None:
        """The trained model as a Hugging Face checkpoint (config + safetensors), written by rank 0:
        what `--model-path` of the next stage (and the rollout servers) load. Under ZeRO-3 every rank
        gathers the whole model for the moment of the copy."""
        import deepspeed

        module = self.engine.module
        if self.sparse_blocks:
            moe.export(module, self.experts, directory)
            if self.rank == 0:
                self._copy_tokenizer(directory)
            dist.barrier()
            return
        with deepspeed.zero.GatheredParameters(list(module.parameters()), enabled=self.stage3):
            if self.rank == 0:
                # Copies: DeepSpeed's parameters are views into flat buffers, which safetensors refuses.
                state = {
                    k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()
                }
                module.save_pretrained(directory, state_dict=state, safe_serialization=True)
                self._copy_tokenizer(directory)
        dist.barrier()
        if self.rank == 0:
            log.info("exported the model to %s", directory)

    def _copy_tokenizer(self, directory: Path) -> None:
        """The next stage tokenises as this one did: the starting checkpoint's tokenizer goes along, or
        the byte tokenizer as Hugging Face files (what a preset uses), so vLLM can serve the export."""
        source = self.cfg.model_path
        for file in sorted(source.iterdir()) if source else []:
            if file.is_file() and (file.name.startswith("tokenizer") or file.name in TOKENIZER_FILES):
                shutil.copy2(file, directory / file.name)
        if not (directory / "tokenizer.json").exists():
            data.ByteTokenizer.save(directory)

    def planned(self, cfg: TrainConfig) -> TrainConfig:
        """The run's configuration once the data is known (MPO counts its steps from epochs)."""
        return cfg

    def updates_per_step(self) -> int:
        """Optimizer updates in one step (the learning-rate schedule counts them)."""
        return 1

    def extra_state(self) -> dict[str, Any]:
        """What a subclass keeps beside step and tokens in the checkpoint's state (JSON)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def log_fields(self) -> dict[str, Any]:
        """What a subclass adds to each line of --log-file: a MoE's routing figures, with the tokens
        each expert of each layer took in the step."""
        if self.moe_stats is None:
            return {}
        counts = self.moe_stats[1:].reshape(len(self.sparse_blocks), -1).int().tolist()
        return {**self.progress_fields(), "tokens_per_expert": counts}

    def progress_fields(self) -> dict[str, Any]:
        """What a subclass adds to rank 0's progress report (camelCase status field names): a MoE's
        load-balancing loss and its experts' load."""
        if self.moe_stats is None:
            return {}
        micro = self.engine.gradient_accumulation_steps() * self.world
        return moe.summary(self.moe_stats, len(self.sparse_blocks), micro)

    # -- the loop ------------------------------------------------------------------------------

    def train_step(self) -> tuple[float, int]:
        """One optimizer step over this rank's micro-batches; returns (mean loss, tokens) summed over
        ranks, plus whether any rank was asked to stop (one all-reduce for all three)."""
        losses, tokens, stats = [], 0, []
        for indices in self.order.micro_batches(self.step, self.rank):
            batch = data.collate([self.data[i] for i in indices])
            batch = {k: v.to(self.engine.device) for k, v in batch.items()}
            if "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(self._compute_dtype())
            loss = self.engine(**batch).loss
            losses.append(loss.detach().float())  # the language-model loss is what progress reports
            if self.sparse_blocks:
                stats.append(moe.step_stats(self.sparse_blocks))
                loss = loss + self.experts.aux_loss_coef * moe.aux_loss(self.sparse_blocks)
            self.engine.backward(loss)
            self.engine.step()
            tokens += int(batch["attention_mask"].sum())
        return self.reduce_step(losses, tokens, torch.stack(stats).sum(dim=0) if stats else None)

    def reduce_step(
        self, losses: list[torch.Tensor], tokens: int, moe_stats: torch.Tensor | None = None
    ) -> tuple[float, int]:
        """(mean loss over ranks, tokens over ranks), and whether any rank was asked to stop or rank 0
        to save, and a MoE's routing figures: one all-reduce for all of it."""
        extra = torch.tensor([float(tokens), *self.controls()], device=self.engine.device)
        parts = [torch.stack(losses).mean().reshape(1), extra]
        summary = torch.cat(parts if moe_stats is None else [*parts, moe_stats.to(extra.device)])
        dist.all_reduce(summary)
        self.apply_controls(summary[2:4].tolist())
        if moe_stats is not None:
            self.moe_stats = summary[4:].cpu()
        return float(summary[0]) / self.world, int(summary[1])

    def controls(self) -> list[float]:
        """This rank's [asked to stop (SIGTERM), asked to save (rank 0: a checkpoint request)], to sum
        over ranks in the step's all-reduce, so every rank acts on the same step."""
        if self.reporter and self.save_requested is None:
            self.save_requested = self.reporter.take_request()
        return [float(self.stop_requested), float(self.save_requested is not None)]

    def apply_controls(self, summed: list[float]) -> None:
        self.stop_requested, self.save_now = summed[0] > 0, summed[1] > 0

    def _compute_dtype(self) -> torch.dtype:
        if self.ds_config.get("bf16", {}).get("enabled"):
            return torch.bfloat16
        return torch.float16 if self.ds_config.get("fp16", {}).get("enabled") else torch.float32

    def run(self) -> int:
        """Train to total_steps; returns the process exit code."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        cfg = self.cfg
        self.resume()
        if self.reporter:
            self.reporter.resumed(self.step, cfg.total_steps)
        if self.reporter and cfg.metrics_port:
            try:
                self.reporter.serve(cfg.metrics_port)
            except OSError as error:  # progress still reaches the operator through the exit message
                log.warning("metrics endpoint on port %d unavailable: %s", cfg.metrics_port, error)
        peak = peak_flops()
        window: list[tuple[float, int]] = []
        try:
            while self.step < cfg.total_steps:
                started = time.perf_counter()
                loss, tokens = self.train_step()
                self.step += 1
                self.tokens += tokens
                window = [*window[-9:], (time.perf_counter() - started, tokens)]
                tps = sum(t for _, t in window) / sum(s for s, _ in window)
                self._report(loss, tps, peak)
                if (
                    self.step % cfg.checkpoint_interval == 0
                    or self.step == cfg.total_steps
                    or self.stop_requested
                    or self.save_now
                ):
                    self.save()
                if self.save_now and self.reporter and self.save_requested:
                    self.reporter.request_saved(self.save_requested)
                    self.save_requested = None
                if self.stop_requested:
                    self._finish(f"stopped by SIGTERM after saving step {self.step}", "SavedOnSigterm")
                    return SIGTERM_EXIT
        except Exception as error:
            self._finish(f"{type(error).__name__}: {error}")
            raise
        if cfg.export_dir:
            self.export(cfg.export_dir)
        self._finish(None)
        return 0

    def _report(self, loss: float, tps: float, peak: float | None) -> None:
        if self.reporter is None:
            return
        mfu = tps * self.flops_per_token / (peak * self.world) if peak else None
        progress = Progress(
            step=self.step,
            total_steps=self.cfg.total_steps,
            loss=loss,
            tokens_per_second=tps,
            mfu=mfu,
            latest_checkpoint=self.reporter.progress.latest_checkpoint,
            extra=self.progress_fields(),
        )
        self.reporter.update(progress, tokens=self.tokens)
        if self.cfg.log_file:
            line = {
                "step": self.step,
                "loss": loss,
                "lr": self.scheduler.get_last_lr()[0],
                "tokens_per_second": tps,
                **self.log_fields(),
            }
            with self.cfg.log_file.open("a") as f:
                f.write(json.dumps(line) + "\n")

    def _finish(self, message: str | None, reason: str | None = None) -> None:
        if self.reporter:
            self.reporter.terminate(message, reason)

    def _on_sigterm(self, *_: Any) -> None:
        log.warning("SIGTERM: saving a checkpoint at the end of this step, then exiting")
        self.stop_requested = True

    def close(self) -> None:
        if self.reporter:
            self.reporter.close()
        dist.destroy_process_group()


def launch(make: Callable[[], Trainer]) -> int:
    """The entry point of every trainer: build it (a failure to build is written to the termination
    message, so the pod's status says why), train, and exit with its code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        trainer = make()
    except Exception as error:
        write_termination_message({"message": f"{type(error).__name__}: {error}"})
        raise
    try:
        return trainer.run()
    finally:
        trainer.close()
