"""pyproject lists every package (package-dir maps folders under the vlmop namespace), and the
entry points start."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        f"vlmop.{p.parent.relative_to(ROOT)}".replace("/", ".")
        for top in config["package-dir"].values()
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert folders == set(config["packages"])


def test_python_m_operator_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vlmop.operator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--standalone" in result.stdout and "--liveness" in result.stdout


def test_vlmop_command_help() -> None:
    from vlmop.operator.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["operator", "run", "--standalone", "-n", "ml"]).namespaces == ["ml"]
    assert parser.parse_args(["local", "examples"]).files == [Path("examples")]


def test_the_operator_never_imports_the_optional_integrations() -> None:
    code = (
        "import sys, vlmop.operator.__main__, vlmop.operator.handlers.pretrainjob; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torchx', 'triton', 'deepspeed')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
