"""Entry point started by torchrun on every worker: parse the flags, train, exit with the trainer's code
(143 after a SIGTERM save, so the operator restarts the group from that checkpoint)."""

from __future__ import annotations

import logging
import sys

from vlmop.workloads.common.progress import write_termination_message
from vlmop.workloads.pretrain.config import parse
from vlmop.workloads.pretrain.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = parse(argv)
    try:
        trainer = Trainer(config)
    except Exception as error:  # bad data or model: say why in the pod's status, not only its log
        write_termination_message({"message": f"{type(error).__name__}: {error}"})
        raise
    try:
        return trainer.run()
    finally:
        trainer.close()


if __name__ == "__main__":
    sys.exit(main())
