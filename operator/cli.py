"""The `vlmop` command: run the operator, generate CRDs, or run everything locally."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlmop.operator.runtime import RunOptions


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no peering/leader election: for one replica, local runs and tests",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        dest="namespaces",
        help="watch only this namespace (repeatable); default: cluster-wide",
    )
    parser.add_argument("--peering", default="vlmop", help="KopfPeering name shared by HA replicas")
    parser.add_argument("--priority", type=int, default=0, help="peering priority; highest is active")
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL ('' disables)"
    )
    parser.add_argument("--metrics-port", type=int, default=9090, help="Prometheus port (0 disables)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    parser.add_argument(
        "--resync-seconds", type=float, default=10.0, help="how often running jobs are re-read"
    )


def run_operator(args: argparse.Namespace) -> None:
    from vlmop.operator import runtime

    runtime.run(
        RunOptions(
            standalone=args.standalone,
            namespaces=args.namespaces,
            peering_name=args.peering,
            priority=args.priority,
            liveness=args.liveness or None,
            metrics_port=args.metrics_port or None,
            verbose=args.verbose,
            resync_seconds=args.resync_seconds,
        )
    )


def write_crds(args: argparse.Namespace) -> None:
    from vlmop.operator import crdgen

    crdgen.main([str(args.directory)])


def run_local(args: argparse.Namespace) -> None:
    from vlmop.operator import local  # needs the `local` extra (kmock)

    sys.exit(local.main(args.files, serve=args.serve, timeout=args.timeout, claims=args.claims))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    operator = commands.add_parser("operator", help="the control plane")
    operator_commands = operator.add_subparsers(dest="operator_command", required=True)
    run = operator_commands.add_parser("run", help="run the operator against the current kubeconfig")
    add_run_arguments(run)
    run.set_defaults(func=run_operator)

    crds = commands.add_parser("crds", help="write the CRDs generated from the API models")
    crds.add_argument("directory", nargs="?", default="crds", type=Path)
    crds.set_defaults(func=write_crds)

    local = commands.add_parser(
        "local", help="API server on loopback + CRDs + operator + local pods; apply CRs and follow them"
    )
    local.add_argument("files", nargs="*", type=Path, help="YAML files or folders of CRs to apply")
    local.add_argument("--serve", action="store_true", help="keep running and print a kubeconfig")
    local.add_argument("--timeout", type=float, default=900, help="seconds to wait for them all to be done")
    local.add_argument(
        "--claims", type=Path, help="folder of claim directories (<claim name>/); default <files>/claims"
    )
    local.set_defaults(func=run_local)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    args.func(args)


def operator_main(argv: list[str] | None = None) -> None:
    """`python -m vlmop.operator [options]` is `vlmop operator run [options]`."""
    parser = argparse.ArgumentParser(prog="python -m vlmop.operator", description="Run the vlmop operator.")
    add_run_arguments(parser)
    run_operator(parser.parse_args(sys.argv[1:] if argv is None else argv))
