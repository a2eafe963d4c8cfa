"""Stage 2 of Cascade RL: the GSPO trainer (`python -m vlmop.workloads.rl.gspo`, started by torchrun).

Each step, every rank takes its prompts (generated task cases, addressed by step like the pretraining
data), asks a rollout server for G samples each, scores them with the Mixture-of-Rewards, turns the
rewards into group advantages (dropping groups with no signal and prompts outside the accuracy band),
and updates the policy with the GSPO (or GRPO) loss on the sampled tokens, in `--mini-batches`
optimizer updates per rollout batch: π_old is the policy that sampled, fixed for the batch, so the
ratio (and the clip) moves from the second update on. Rank 0 then publishes the new weights to every
rollout server, so the next step samples from them; each sample records the version it came from
(staleness is logged)."""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import prometheus_client
import torch
import torch.distributed as dist

from vlmop.workloads.pretrain import config as pretrain_config
from vlmop.workloads.pretrain import data
from vlmop.workloads.pretrain.trainer import Trainer, launch
from vlmop.workloads.rl import rollout
from vlmop.workloads.rl.logprobs import token_logps
from vlmop.workloads.rl.losses import LossMode, group_advantages, informative, policy_loss
from vlmop.workloads.rl.rewards.environments import TASKS
from vlmop.workloads.rl.rewards.mixture import OUTCOMES, MixtureOfRewards, Sample, Tally

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GSPOTrainConfig(pretrain_config.TrainConfig):
    rollout_urls: tuple[str, ...] = ()
    rollout_engine: rollout.Engine = "vllm"  # vlmop: the transformers stand-in (rollout_server.py)
    weights_dir: Path = Path("/weights")
    tasks: tuple[str, ...] = ("arithmetic-24",)
    cases: int = 4096  # generated prompts, cycled through by step
    rewards: Path | None = None  # JSON {"verifiers", "routes"}; default: each task to its environment
    reward_workers: int | None = None  # processes for the computing verifiers; default: cores, at most 8
    group_size: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    loss_mode: LossMode = "gspo"
    eps_low: float | None = None
    eps_high: float | None = None
    min_accuracy: float = 0.2
    max_accuracy: float = 0.8
    drop_zero_variance: bool = True  # groups whose rewards are all equal leave the loss's average
    mini_batches: int = 1  # policy updates per rollout batch (promptsPerStep / miniBatchPrompts)
    lr: float = 1e-6  # InternVL3.5's GSPO learning rate


def parse(argv: list[str] | None = None) -> GSPOTrainConfig:
    p: argparse.ArgumentParser = pretrain_config.parser(data_required=False)  # prompts come from --task
    p.prog = "python -m vlmop.workloads.rl.gspo"
    p.description = "GSPO with rollouts from OpenAI-compatible servers and a Mixture-of-Rewards."
    d = GSPOTrainConfig(data=Path())
    p.set_defaults(lr=d.lr, data=Path("-"))
    p.add_argument("--rollout-url", dest="rollout_urls", action="append", required=True)
    p.add_argument("--rollout-engine", choices=["vlmop", "vllm"], default=d.rollout_engine,
                   help="vllm: token ids in and out; pause/reload/reset/resume per version")  # fmt: skip
    p.add_argument("--weights-dir", type=Path, required=True, help="shared with the rollout servers")
    p.add_argument("--task", dest="tasks", action="append", choices=sorted(TASKS))
    p.add_argument("--cases", type=int, default=d.cases)
    p.add_argument("--rewards", type=Path, help="JSON {verifiers, routes}; default: task environments")
    p.add_argument("--reward-workers", type=int, help="processes for math/choice/environment verifiers")
    p.add_argument("--group-size", type=int, default=d.group_size)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--max-tokens", type=int, default=d.max_tokens)
    p.add_argument("--loss-mode", choices=["gspo", "grpo"], default=d.loss_mode)
    p.add_argument("--eps-low", type=float)
    p.add_argument("--eps-high", type=float)
    p.add_argument("--min-accuracy", type=float, default=d.min_accuracy)
    p.add_argument("--max-accuracy", type=float, default=d.max_accuracy)
    p.add_argument("--keep-zero-variance", dest="drop_zero_variance", action="store_false",
                   help="count groups whose rewards are all equal in the loss's average")  # fmt: skip
    p.add_argument("--mini-batches", type=int, default=d.mini_batches, help="updates per rollout batch")
    args = vars(p.parse_args(argv))
    if args.get("model_path"):
        args["model_preset"] = None
    args["rollout_urls"] = tuple(args["rollout_urls"])
    args["tasks"] = tuple(args["tasks"] or d.tasks)
    return GSPOTrainConfig(**{f.name: args[f.name] for f in fields(GSPOTrainConfig) if f.name in args})


@dataclass(frozen=True)
class Prompt:
    source: str  # the routing key of the Mixture-of-Rewards
    text: str
    gold: Any  # what the source's verifier checks against: an answer, tests, or a task case


class Prompts:
    """The prompts steps draw from, the same on every rank: JSONL records {"prompt", "source",
    "answer" | "tests" | "case"} from --data, else cases generated (seeded) from --task."""

    def __init__(self, cfg: GSPOTrainConfig) -> None:
        if str(cfg.data) != "-":
            self.items = [_prompt(where, record) for where, record in data.jsonl_records(cfg.data)]
        else:
            rng = random.Random(cfg.seed)  # noqa: S311 (task data, not secrets)
            self.items = []
            for name in (cfg.tasks * cfg.cases)[: cfg.cases]:
                case = TASKS[name].case_generator(rng)
                self.items.append(Prompt(name, TASKS[name].prompt_func(case), case))
        if not self.items:
            raise ValueError(f"no prompts in {cfg.data}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Prompt:
        return self.items[index]


def _prompt(where: str, record: dict[str, Any]) -> Prompt:
    if not isinstance(record.get("prompt"), str) or not isinstance(record.get("source"), str):
        raise ValueError(f'{where}: a prompt record needs "prompt" and "source" strings')
    gold = next((record[k] for k in ("answer", "tests", "case") if k in record), None)
    return Prompt(record["source"], record["prompt"], gold)


class GSPOTrainer(Trainer):
    cfg: GSPOTrainConfig

    def __init__(self, cfg: GSPOTrainConfig) -> None:
        super().__init__(cfg)
        # ZeRO-3 (self.stage3) partitions the LM head: log-probs from the logits there, fused
        # otherwise; each publication gathers the whole model for the moment of the copy.
        if self.engine.gradient_accumulation_steps() != 1:
            raise ValueError("GSPO updates once per mini-batch: use --gradient-accumulation-steps 1")
        if not 1 <= cfg.mini_batches <= self.engine.train_micro_batch_size_per_gpu():
            raise ValueError("--mini-batches must be between 1 and the prompts per rank (--micro-batch-size)")
        spec = json.loads(cfg.rewards.read_text()) if cfg.rewards else default_rewards(cfg.tasks)
        self.mixture = MixtureOfRewards.from_spec(spec, cfg.reward_workers)
        unrouted = sorted({p.source for p in self.prompts.items} - self.mixture.routes.keys())
        if unrouted:
            raise ValueError(f"no reward route for the prompt sources {unrouted}: add them to --rewards")
        self.tokenizer = data.tokenizer_for(cfg.model_path)
        self.sources = sorted(self.mixture.routes)
        self.verifiers = sorted({v.name for v in self.mixture.routes.values()})
        self.parts: dict[str, float] = {}
        self.rewards_by_source: dict[str, float] = {}
        self.rewards_by_verifier: dict[str, dict[str, float]] = {}
        self.reward_metrics = RewardMetrics(self.reporter.registry) if self.reporter else None
        self.version = 0  # of the weights the rollout servers were last given

    def _build_data(self) -> Prompts:  # type: ignore[override]
        return Prompts(self.cfg)

    @property
    def prompts(self) -> Prompts:
        return cast(Prompts, self.data)

    def updates_per_step(self) -> int:
        return self.cfg.mini_batches

    def resume(self) -> Path | None:
        found = super().resume()
        rollout.wait_ready(self.cfg.rollout_urls)
        self._publish(self.step)  # the servers sample from exactly the policy being trained
        return found

    def _publish(self, version: int) -> None:
        import deepspeed

        module = self.engine.module
        with deepspeed.zero.GatheredParameters(list(module.parameters()), enabled=self.stage3):
            if self.rank == 0:  # to every replica behind each URL (a headless Service's pods)
                servers = rollout.endpoints(self.cfg.rollout_urls)
                rollout.publish(
                    module, self.cfg.weights_dir, version, servers, engine=self.cfg.rollout_engine
                )
        dist.barrier()
        self.version = version

    def _catch_up(self, servers: list[str]) -> None:
        """A vLLM replica that restarted serves the starting model: rank 0 loads the current version
        into it (from the folder it was published to) before anyone samples."""
        if self.rank == 0:
            for server in rollout.stale(servers, self.version, self.cfg.rollout_engine):
                log.warning(
                    "rollout server %s lost policy version %d: loading it again", server, self.version
                )
                directory = self.cfg.weights_dir / f"v{self.version:08d}"
                rollout.load(server, directory, self.version, self.cfg.rollout_engine)
        if self.cfg.rollout_engine == "vllm":
            dist.barrier()

    def train_step(self) -> tuple[float, int]:
        cfg = self.cfg
        seconds = dict.fromkeys(("rollout", "reward", "update", "publish"), 0.0)  # this rank's
        clock = time.perf_counter()

        def lap(phase: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[phase] += now - clock
            clock = now

        indices = [i for micro in self.order.micro_batches(self.step, self.rank) for i in micro]
        prompts = [self.prompts[i] for i in indices]
        servers = rollout.endpoints(cfg.rollout_urls)  # again each step: replicas come and go
        self._catch_up(servers)
        servers = servers[self.rank % len(servers) :] + servers[: self.rank % len(servers)]  # spread ranks
        tok = self.tokenizer
        requests = [
            rollout.Request(p.text, [tok.bos_id, *tok.encode(p.text)], cfg.group_size, cfg.temperature,
                            cfg.max_tokens, cfg.top_p, tok.eos_id)
            for p in prompts
        ]  # fmt: skip
        groups = rollout.sample_all(servers, requests, cfg.rollout_engine, self.version)
        lap("rollout")
        samples = [Sample(p.source, p.text, tok.decode(c.token_ids), p.gold)
                   for p, group in zip(prompts, groups, strict=True) for c in group]  # fmt: skip
        scores = self.mixture.score(samples)
        rewards = torch.tensor(scores.rewards).view(len(prompts), cfg.group_size)
        lap("reward")
        mean = rewards.mean(-1)
        keep = (mean >= cfg.min_accuracy) & (mean <= cfg.max_accuracy)
        if cfg.drop_zero_variance:
            keep &= informative(rewards)
        advantages = (group_advantages(rewards) * keep.unsqueeze(-1)).flatten().to(self.engine.device)
        batch = self._sequences([p.text for p in prompts], groups)
        with torch.no_grad():  # π_old: the policy that sampled, fixed across the mini-batches
            old = token_logps(
                self.engine.module, batch["input_ids"], batch["attention_mask"], not self.stage3
            )
        losses, clipped = [], 0.0
        for part in torch.arange(len(prompts)).tensor_split(cfg.mini_batches):
            rows = (part.unsqueeze(-1) * cfg.group_size + torch.arange(cfg.group_size)).flatten()
            logps = token_logps(
                self.engine.module, batch["input_ids"][rows], batch["attention_mask"][rows], not self.stage3
            )
            out = policy_loss(
                logps, old[rows], batch["mask"][rows], advantages[rows], cfg.loss_mode, cfg.eps_low,
                cfg.eps_high,
            )  # fmt: skip
            # Dropped groups have zero advantage; average over the kept sequences only. Every rank
            # still runs backward and step, so the collectives stay in step.
            loss = out.loss * (len(rows) / max(int(keep[part].sum()) * cfg.group_size, 1))
            self.engine.backward(loss)
            self.engine.step()  # one optimizer update per mini-batch (gradient accumulation is 1)
            losses.append(float(loss.detach()))
            clipped += out.clip_fraction
        tokens = int(batch["attention_mask"].sum())
        response_tokens = float(batch["mask"].sum())
        staleness = float(sum(self.step - c.version for group in groups for c in group))  # 0: on-policy
        totals = [sum(losses) / len(losses), tokens, *self.controls(), float(rewards.sum()),
                  rewards.numel(), clipped / len(losses), response_tokens, staleness]  # fmt: skip
        for source in self.sources:  # per-source sums and counts, in the same all-reduce
            values = scores.by_source.get(source, [])
            totals += [sum(values), len(values)]
        for name in self.verifiers:  # and each verifier's tally
            totals += scores.by_verifier[name].as_list() if name in scores.by_verifier else [0.0] * 5
        summary = torch.tensor(totals, dtype=torch.float64, device=self.engine.device)
        dist.all_reduce(summary)
        reduced = summary.tolist()
        loss, tokens_all, stop, save, reward_sum, samples, clip_sum, length_sum, stale_sum = reduced[:9]
        per_source = reduced[9 : 9 + 2 * len(self.sources)]
        by_source = zip(self.sources, per_source[0::2], per_source[1::2], strict=True)
        self.rewards_by_source = {source: total / n for source, total, n in by_source if n}
        tallies = reduced[9 + 2 * len(self.sources) :]
        self._tally({name: Tally.of(tallies[5 * i : 5 * i + 5]) for i, name in enumerate(self.verifiers)})
        self.apply_controls([stop, save])
        self.parts = {
            "reward_mean": reward_sum / samples,
            "clip_fraction": clip_sum / self.world,
            "response_length": length_sum / samples,
            "staleness": stale_sum / samples,
        }
        if self.reward_metrics:
            self.reward_metrics.clip_fraction.set(self.parts["clip_fraction"])
        lap("update")
        self._publish(self.step + 1)  # run() counts this step next; these weights sample the next one
        lap("publish")
        self.parts.update({f"seconds_{phase}": value for phase, value in seconds.items()})
        return loss / self.world, int(tokens_all)

    def _sequences(
        self, prompts: list[str], groups: list[list[rollout.Completion]]
    ) -> dict[str, torch.Tensor]:
        """prompt + sampled tokens per completion, padded; `mask` marks the sampled targets."""
        rows, starts = [], []
        for prompt, group in zip(prompts, groups, strict=True):
            head = [self.tokenizer.bos_id, *self.tokenizer.encode(prompt)]
            for completion in group:
                rows.append(head + completion.token_ids)
                starts.append(len(head))
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.tokenizer.pad_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        mask = torch.zeros((len(rows), length - 1))
        for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
            ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
            mask[i, start - 1 : len(row) - 1] = 1.0
        device = self.engine.device
        return {"input_ids": ids.to(device), "attention_mask": attention.to(device), "mask": mask.to(device)}

    def close(self) -> None:
        self.mixture.close()
        super().close()

    def _tally(self, tallies: dict[str, Tally]) -> None:
        """The step's outcomes per verifier (all ranks) into the progress report and the metrics: a
        verifier that fails, times out or scores everything 0 shows within a step."""
        self.rewards_by_verifier = {}
        for name, tally in tallies.items():
            samples = tally.scored + tally.failed + tally.timed_out
            if not samples:
                continue
            self.rewards_by_verifier[name] = {
                "scored": tally.scored,
                "failed": tally.failed,
                "timedOut": tally.timed_out,
                "fullScoreShare": round(tally.full / tally.scored, 4) if tally.scored else 0.0,
                "meanReward": round(tally.total / tally.scored, 4) if tally.scored else 0.0,
            }
            if self.reward_metrics:
                self.reward_metrics.add(name, tally)

    def log_fields(self) -> dict[str, Any]:
        return {**self.parts, "rewards_by_verifier": self.rewards_by_verifier}

    def progress_fields(self) -> dict[str, Any]:
        return {
            "meanRewardBySource": self.rewards_by_source,
            "rewardsByVerifier": self.rewards_by_verifier,
            "clipFraction": self.parts.get("clip_fraction"),
            "policyVersion": self.version,
        }


class RewardMetrics:
    """Rank 0's RL metrics for Prometheus: reward counters summed over every rank, the clip fraction."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.samples = prometheus_client.Counter(
            "vlmop_reward_samples", "Samples per verifier by outcome (scored, failed, timed_out).",
            ["verifier", "outcome"], registry=registry,
        )  # fmt: skip
        self.full = prometheus_client.Counter(
            "vlmop_reward_full_score_samples", "Scored samples that got 1.0, per verifier.", ["verifier"],
            registry=registry,
        )  # fmt: skip
        self.clip_fraction = prometheus_client.Gauge(
            "vlmop_rl_clip_fraction", "Share of clipped ratios in the last step (mean over ranks).",
            registry=registry,
        )  # fmt: skip

    def add(self, verifier: str, tally: Tally) -> None:
        for outcome in OUTCOMES:
            self.samples.labels(verifier, outcome).inc(getattr(tally, outcome))
        self.full.labels(verifier).inc(tally.full)


def default_rewards(tasks: tuple[str, ...]) -> dict[str, Any]:
    return {
        "verifiers": [{"name": t, "type": "environment", "environment": t} for t in tasks],
        "routes": [{"source": t, "verifier": t} for t in tasks],
    }


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    return launch(lambda: GSPOTrainer(config))


if __name__ == "__main__":
    sys.exit(main())
