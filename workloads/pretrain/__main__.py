"""Entry point started by torchrun on every worker: parse the flags, train, exit with the trainer's code
(143 after a SIGTERM save, so the operator restarts the group from that checkpoint)."""

from __future__ import annotations

import sys

from vlmop.workloads.pretrain.config import parse
from vlmop.workloads.pretrain.trainer import Trainer, launch


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    return launch(lambda: Trainer(config))


if __name__ == "__main__":
    sys.exit(main())
