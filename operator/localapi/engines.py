"""Where this machine's vLLM is: the CPU build in its own venv (`.ci/vllm-venv` makes `.venv-vllm`
beside the sources; VLMOP_VLLM_PYTHON names another), started through `vllm_serve.py` (the CPU
distribution's `vllm` script cannot run) with the environment its CPU backend needs here."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVE = Path(__file__).resolve().parent / "vllm_serve.py"
# 1 GiB of KV cache, no thread pinning (cores are shared with the other pools), no model hub.
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "HF_HUB_OFFLINE": "1"}


def vllm_python() -> Path:
    """The vLLM venv's python (it may not exist: see `installed`)."""
    return Path(os.environ.get("VLMOP_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))


def serve() -> list[str]:
    """`vllm serve` here. -P: the script's folder (operator/localapi, whose selectors.py would shadow
    the standard library's) is not put on sys.path."""
    return [str(vllm_python()), "-P", str(SERVE)]


def installed() -> bool:
    return vllm_python().is_file()
