"""Entry point started by torchrun on every worker: parse the flags, train, exit with the trainer's code
(143 after a SIGTERM save, so the operator restarts the group from that checkpoint)."""

from __future__ import annotations

import logging
import sys

from vlmop.workloads.pretrain.config import parse
from vlmop.workloads.pretrain.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    trainer = Trainer(parse(argv))
    try:
        return trainer.run()
    finally:
        trainer.close()


if __name__ == "__main__":
    sys.exit(main())
