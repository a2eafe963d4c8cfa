"""Clients of model verifiers served over HTTP (one verifier pool, or an endpoint you run):

- CompassVerifier: an OpenAI-compatible chat endpoint (as vLLM serves it) judges a response against
  the gold answer; the last \\boxed{A|B|C} decides: A correct (1.0); B incorrect and C invalid (0.0).
- POLAR: a reward-model endpoint scores a candidate against a reference: POST {"prompt",
  "reference", "output"} → {"score": float}.

An answer the protocol cannot read raises VerifierError, which the mixture scores as the verifier's
failure value; so do timeouts and HTTP errors."""

from __future__ import annotations

import json
import math
import re
import urllib.request
from typing import Any

BOXED_VERDICT = re.compile(r"\\boxed\{\s*([ABC])\s*\}")
COMPASS_PROMPT = """As a grading expert, judge whether the candidate's final answer matches the gold answer.
Reply with \\boxed{{A}} if it is correct, \\boxed{{B}} if it is incorrect, \\boxed{{C}} if it is invalid
(truncated, repetitive, or no answer).

<Question>{question}</Question>
<Gold Answer>{gold}</Gold Answer>
<Candidate Response>{response}</Candidate Response>"""


class VerifierError(Exception):
    """The verifier answered, but not in its protocol."""


def post_json(url: str, body: dict[str, Any], timeout: float) -> Any:
    request = urllib.request.Request(  # noqa: S310 (the URL comes from the job spec: http(s) only)
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    if not url.startswith(("http://", "https://")):
        raise VerifierError(f"verifier endpoint {url!r} is not http(s)")
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
        return json.loads(reply.read())


def compass_verdict(text: str) -> str:
    verdicts = BOXED_VERDICT.findall(text)
    if not verdicts:
        raise VerifierError(f"no \\boxed{{A|B|C}} verdict in {text[-200:]!r}")
    return str(verdicts[-1])


def compass_verifier(
    endpoint: str, question: str, gold: str, response: str, model: str = "verifier", timeout: float = 30.0
) -> float:
    prompt = COMPASS_PROMPT.format(question=question, gold=gold, response=response)
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0.0}
    reply = post_json(endpoint.rstrip("/") + "/v1/chat/completions", body, timeout)
    try:
        text = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as error:
        raise VerifierError(f"not a chat completion: {str(reply)[:200]}") from error
    return 1.0 if compass_verdict(str(text)) == "A" else 0.0


def polar(endpoint: str, prompt: str, reference: str, output: str, timeout: float = 30.0) -> float:
    reply = post_json(endpoint, {"prompt": prompt, "reference": reference, "output": output}, timeout)
    score = reply.get("score") if isinstance(reply, dict) else None
    if not isinstance(score, int | float) or isinstance(score, bool) or not math.isfinite(score):
        raise VerifierError(f"no finite score in {str(reply)[:200]}")
    return float(score)
