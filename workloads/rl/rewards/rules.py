"""Rule verifiers: math answers (math-verify: exact, numeric and symbolic equivalence) and multiple
choice. Each takes the model's full response and the gold answer and returns 1.0 or 0.0."""

from __future__ import annotations

import re

from math_verify import parse, verify

# The last choice a response commits to: \boxed{B}, "answer is (B)", "Answer: B", or a lone "B." line
# (the letter after "answer" must be a capital: "the answer is a number" chooses nothing).
CHOICE = re.compile(
    r"\\boxed\{\s*\(?([A-Z])\)?\s*\}|answer\s*(?:is|:)?\s*\(?(?-i:([A-Z]))\)?(?![A-Za-z])"
    r"|^\s*\(?([A-Z])\)?[.)]?\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def math_answer(response: str, gold: str) -> float:
    """1.0 when the response's final answer equals the gold one (LaTeX or plain, 1/2 == 0.5).
    math-verify's own timeouts use SIGALRM, which only works on the main thread: they are off, and
    the mixture bounds the time instead."""
    gold_parsed = parse(gold if "$" in gold or "\\" in gold else f"${gold}$", parsing_timeout=None)
    if not gold_parsed:
        return 0.0
    answer = parse(response, parsing_timeout=None)
    return 1.0 if verify(gold_parsed, answer, timeout_seconds=None) else 0.0


def choice(response: str) -> str | None:
    """The letter the response answers with, or None."""
    found = [next(g for g in m.groups() if g) for m in CHOICE.finditer(response)]
    return found[-1].upper() if found else None


def multiple_choice(response: str, gold: str) -> float:
    return 1.0 if choice(response) == gold.strip().strip("()").upper() else 0.0
