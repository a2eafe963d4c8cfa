"""Each image's Dockerfile, read for its structure (nothing is built here: no Docker daemon in CI):
pinned bases, several stages, a non-root final user, a healthcheck, no build tools in the final stage,
and an entry point that exists in the package; and every image the examples and the chart name has
a Dockerfile."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = sorted(p.parent.name for p in (ROOT / "images").glob("*/Dockerfile"))
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|python3-dev|cmake)\b")


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "images" / name / "Dockerfile").read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"exec form expected: {arguments}"
    return [str(v) for v in value]


def test_there_is_an_image_per_component() -> None:
    assert IMAGES == ["gateway", "lm", "operator", "rl", "trainer", "vision"]
    named = set()
    for path in [*(ROOT / "examples").glob("*.yaml"), ROOT / "helm" / "vlmop" / "values.yaml"]:
        named |= set(re.findall(r"ghcr\.io/vlmop/([a-z]+)", path.read_text()))
    assert named <= set(IMAGES), f"images without a Dockerfile: {named - set(IMAGES)}"


@pytest.mark.parametrize("name", IMAGES)
def test_dockerfile_structure(name: str) -> None:
    steps = instructions(name)
    bases = [args.split()[0] for keyword, args in steps if keyword == "FROM"]
    assert len(bases) >= 2, "multi-stage: build tools stay in the first stage"
    for base in bases:
        _, _, tag = base.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{base}: pin the base by version"
    final = final_stage(steps)
    users = [args for keyword, args in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final stage runs as non-root"
    assert any(keyword == "HEALTHCHECK" for keyword, _ in final)
    for keyword, args in final:
        if keyword == "RUN":
            assert not BUILD_TOOLS.search(args), f"build tools in the final stage: {args}"
    entry = [exec_form(args) for keyword, args in final if keyword == "ENTRYPOINT"]
    cmd = [exec_form(args) for keyword, args in final if keyword == "CMD"]
    assert entry, "an ENTRYPOINT in exec form"
    command = entry[-1] + (cmd[-1] if cmd else [])
    modules = [command[i + 1] for i, part in enumerate(command[:-1]) if part == "-m"]
    for module in modules:  # what `python -m` / `torchrun -m` will import exists in the package
        assert module.startswith("vlmop.") and importlib.util.find_spec(module) is not None, module
    if name == "lm":
        assert bases[-1].startswith("vllm/vllm-openai:") and command[0] == "vllm"
    else:
        assert modules, "the entry point runs a vlmop module"
