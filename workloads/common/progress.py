"""How a trainer reports progress without any Kubernetes API access: rank 0 serves `GET /metrics`
(Prometheus) and `GET /progress` (JSON whose keys are the custom resource's status fields) on one
port, and writes the same JSON as its termination message when it ends. The operator reads both
(vlmop.operator.progress); nothing in the pod can write the custom resource."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import prometheus_client

TERMINATION_LOG = "/dev/termination-log"
MESSAGE_LIMIT = 4096  # the kubelet keeps at most 4 KiB of a termination message
TOKEN = re.compile(r"[-._a-zA-Z0-9]{1,63}")  # a checkpoint request's token (an annotation value)


@dataclass
class Progress:
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    tokens_per_second: float | None = None
    mfu: float | None = None
    latest_checkpoint: str | None = None
    message: str | None = None
    reason: str | None = None  # why it ended, for the operator's failure policy (SavedOnSigterm)
    checkpoint_request: str | None = None  # the last requested checkpoint saved (its token)
    extra: dict[str, Any] = field(default_factory=dict)  # a trainer's own fields (GSPO: rewards)

    def to_json(self) -> dict[str, Any]:
        raw = {
            "step": self.step,
            "totalSteps": self.total_steps,
            "loss": self.loss,
            "tokensPerSecond": self.tokens_per_second,
            "mfu": self.mfu,
            "latestCheckpoint": self.latest_checkpoint,
            "message": self.message,
            "reason": self.reason,
            "checkpointRequest": self.checkpoint_request,
        }
        return {k: v for k, v in {**self.extra, **raw}.items() if v is not None}


# A trainer's own figures exported as gauges too, created on their first value (a dense run has none).
EXTRA_GAUGES = {
    "auxLoss": ("vlmop_train_moe_aux_loss", "Mixture-of-Experts: load-balancing loss of a layer."),
    "expertLoadImbalance": (
        "vlmop_train_moe_expert_load_imbalance",
        "Mixture-of-Experts: busiest expert's tokens over an even share (worst layer; 1 is balanced).",
    ),
}


class Reporter:
    """Rank 0's progress: Prometheus gauges plus the JSON document, updated once per step."""

    def __init__(self, job: str = "pretrain") -> None:
        self.registry = prometheus_client.CollectorRegistry()
        labels = ["job"]
        self.job = job

        def gauge(name: str, doc: str) -> prometheus_client.Gauge:
            return prometheus_client.Gauge(name, doc, labels, registry=self.registry).labels(job)

        self.step = gauge("vlmop_train_step", "Last optimizer step.")
        self.total = gauge("vlmop_train_total_steps", "Optimizer steps of the whole run.")
        self.loss = gauge("vlmop_train_loss", "Training loss of the last step (mean over ranks).")
        self.tps = gauge("vlmop_train_tokens_per_second", "Tokens per second of the whole gang.")
        self.mfu = gauge("vlmop_train_mfu", "Model FLOPs utilisation estimate (GPU only).")
        self.tokens = gauge("vlmop_train_tokens_total", "Tokens trained on so far.")
        self.checkpoint = gauge("vlmop_train_checkpoint_step", "Step of the newest complete checkpoint.")
        self.gauge = gauge
        self.extra: dict[str, Any] = {}  # EXTRA_GAUGES' gauges, by field
        self.progress = Progress()
        self.requested: str | None = None  # a checkpoint asked for (POST /checkpoint), not yet taken
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def update(self, progress: Progress, tokens: int | None = None) -> None:
        with self._lock:
            progress.checkpoint_request = progress.checkpoint_request or self.progress.checkpoint_request
            self.progress = progress
        self.step.set(progress.step)
        self.total.set(progress.total_steps)
        for gauge, value in ((self.loss, progress.loss), (self.tps, progress.tokens_per_second)):
            if value is not None:
                gauge.set(value)
        if progress.mfu is not None:
            self.mfu.set(progress.mfu)
        if tokens is not None:
            self.tokens.set(tokens)
        for key, value in progress.extra.items():
            if key in EXTRA_GAUGES and value is not None:
                if key not in self.extra:
                    self.extra[key] = self.gauge(*EXTRA_GAUGES[key])
                self.extra[key].set(value)

    def resumed(self, step: int, total_steps: int) -> None:
        """Where a (re)started run stands before its first step: a run resumed at its last step trains
        none, and must still say how far it got."""
        with self._lock:
            self.progress.step, self.progress.total_steps = step, total_steps
        self.step.set(step)
        self.total.set(total_steps)

    def take_request(self) -> str | None:
        """The token of a checkpoint asked for since the last call, if any."""
        with self._lock:
            token, self.requested = self.requested, None
        return token

    def request_saved(self, token: str) -> None:
        with self._lock:
            self.progress.checkpoint_request = token

    def checkpointed(self, step: int, path: str) -> None:
        with self._lock:
            self.progress.latest_checkpoint = path
        self.checkpoint.set(step)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.progress.to_json()

    def serve(self, port: int, host: str = "0.0.0.0") -> int:  # noqa: S104 - read by the operator
        """Start the endpoint in a daemon thread; returns the bound port (0 picks a free one)."""
        reporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, kind = prometheus_client.generate_latest(reporter.registry), "text/plain"
                elif self.path == "/progress":
                    body, kind = json.dumps(reporter.snapshot()).encode(), "application/json"
                else:
                    self.send_error(404)
                    return
                self._reply(200, body, kind)

            def do_POST(self) -> None:
                """POST /checkpoint {"token": "..."}: save at the end of the current step (the operator
                asks for it when the job's vlmop.io/checkpoint-request annotation changes)."""
                if self.path != "/checkpoint":
                    self.send_error(404)
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    token = json.loads(self.rfile.read(min(length, 1024)) or b"{}").get("token")
                except (ValueError, AttributeError):
                    token = None
                if not isinstance(token, str) or not TOKEN.fullmatch(token):
                    self.send_error(400, 'want {"token": "<1-63 of [-._a-zA-Z0-9]>"}')
                    return
                with reporter._lock:
                    reporter.requested = token
                self._reply(202, json.dumps({"token": token}).encode(), "application/json")

            def _reply(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:  # scraped every few seconds: keep logs quiet
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def terminate(self, message: str | None = None, reason: str | None = None) -> None:
        """Write the final progress as the termination message."""
        with self._lock:
            self.progress.message, self.progress.reason = message, reason
            report = self.progress.to_json()
        write_termination_message(report)


def write_termination_message(report: dict[str, Any]) -> None:
    """The pod's termination message (when the path is writable), its `message` cut to fit 4 KiB."""
    if len(report.get("message") or "") > MESSAGE_LIMIT // 2:
        report = {**report, "message": "..." + report["message"][-MESSAGE_LIMIT // 2 :]}
    path = Path(os.environ.get("VLMOP_TERMINATION_LOG", TERMINATION_LOG))
    with contextlib.suppress(OSError):  # outside Kubernetes there is no termination log
        path.write_text(json.dumps(report))
