"""Peak memory and time of per-token log-probs (forward + backward to hidden and LM-head weight): the
fused chunked op against the naive full-logits torch path, and Liger-Kernel's fused linear cross
entropy when it is installed (GPU). Each (provider, vocab) runs in its own process so one's peak does
not hide the other's.

  python bench/linear_logprob.py                          # CPU: chunked torch path, fp32
  python bench/linear_logprob.py --device cuda --dtype bf16 --tokens 16384 --hidden 4096 \
      --vocab 151936                                      # one GPU: the Triton kernels

Memory is the peak above what the inputs already hold: CPU from the process's max RSS, GPU from
torch.cuda.max_memory_allocated. Time is p50 (p20, p80) of --reps runs after one warm-up."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(args: argparse.Namespace, provider: str, vocab: int) -> dict[str, float]:
    from vlmop.kernels import linear_logprob

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    g = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(args.tokens, args.hidden, generator=g, device=device).to(dtype).requires_grad_()
    weight = torch.randn(vocab, args.hidden, generator=g, device=device).div_(args.hidden**0.5).to(dtype)
    weight.requires_grad_()
    targets = torch.randint(0, vocab, (args.tokens,), generator=g, device=device)

    def step() -> None:
        if provider == "naive":  # what one writes without a fused op: full logits, log_softmax, gather
            logits = (hidden @ weight.T).float()
            logp = torch.log_softmax(logits, dim=-1).gather(1, targets.unsqueeze(1))
        elif provider == "fused":
            logp = linear_logprob(hidden, weight, targets)  # type: ignore[assignment]
        else:
            from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

            loss = liger_fused_linear_cross_entropy(hidden, weight, targets, reduction="none")
            logp = -(loss[0] if isinstance(loss, tuple) else loss)  # newer releases add z_loss
        logp.sum().backward()
        hidden.grad = weight.grad = None

    # Load the libraries' kernels and workspaces on a tiny problem first, so the peak is the op's own.
    full = hidden, weight, targets
    hidden, weight, targets = hidden[:8].detach().requires_grad_(), weight[:64].detach(), targets[:8] % 64
    weight.requires_grad_()
    step()
    hidden, weight, targets = full
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = rss_mib()
    step()  # warm-up, and the run whose peak is measured
    sync()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    q = torch.tensor(times).quantile(torch.tensor([0.5, 0.2, 0.8])).tolist()
    return {"peak_mib": peak, "ms_p50": q[0] * 1e3, "ms_p20": q[1] * 1e3, "ms_p80": q[2] * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 151936])
    parser.add_argument("--providers", nargs="+", default=["naive", "fused", "liger"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("PROVIDER", "VOCAB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args, args.child[0], int(args.child[1]))))
        return
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # real kernels or torch only
    for vocab in args.vocab:
        found: dict[str, dict[str, float]] = {}
        for provider in args.providers:
            if provider == "liger" and (args.device == "cpu" or not _has("liger_kernel")):
                print(f"liger: skipped ({'needs a GPU' if args.device == 'cpu' else 'not installed'})")
                continue
            command = [sys.executable, __file__, *sys.argv[1:], "--child", provider, str(vocab)]
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            found[provider] = json.loads(out.strip().splitlines()[-1])
            variant = f"{provider} N={args.tokens} d={args.hidden} V={vocab} {args.dtype}"
            results.append("linear_logprob", variant, found[provider])
        if "naive" in found and "fused" in found:
            ratio = found["fused"]["peak_mib"] / found["naive"]["peak_mib"]
            variant = f"fused/naive N={args.tokens} d={args.hidden} V={vocab} {args.dtype}"
            results.append("linear_logprob", variant, {"peak_memory_ratio": ratio})


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
