"""Rule verifiers: math answers (math-verify: exact, numeric and symbolic equivalence) and multiple
choice. Each takes the model's full response and the gold answer and returns 1.0 or 0.0."""

from __future__ import annotations

import re
import unicodedata

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

# A choice is a capital letter standing alone: "(B)", "B." or "**B**", never the B of "Because" or "B2";
# only capitals, so "a number" and the roman "(i)" choose nothing. Markdown, $...$ and \text{ may wrap it.
_LETTER = r"(?<![A-Za-z0-9])([A-Z])(?![A-Za-z0-9])"
_WRAP = r"[\s*:$]*+(?:\\(?:text|textbf|mathrm|mathbf)\{)?[\s(\[{*]*+"  # possessive: linear time
# An explicit commitment: \boxed{B}, "the answer is (B)", "**Answer:** B", "the correct option is B",
# "答案是 B" (the references' own patterns: OpenCompass first_option_postprocess, simple-evals, MMLU-Pro).
CHOICE = re.compile(
    rf"(?:\\boxed\{{|(?i:(?:answer(?:\s+(?:choice|option))?|option|choice)\**\s*"
    rf"(?::|is|would\s+be|should\s+be|must\s+be)(?:\s+(?:option|choice))?)|答案[是为应该选]*){_WRAP}{_LETTER}"
)
# A letter only named: "I think (B).", "(C) 36", "C. 36", "Option D", "B is correct", a line that is
# just "B", or a response ending on it ("Therefore, B."). Counted only when nothing is committed to.
_NAMED = re.compile(
    rf"\(\s*{_LETTER}\s*\)|(?i:option|choice)\s+\(?{_LETTER}|^[ \t*#]*{_LETTER}[.):*]*[ \t]*$"
    rf"|\A\s*{_LETTER}[.)]\s(?![\s\S]*^[ \t]*[A-Z][.)]\s)"  # "C. 36" opening it, not an option list
    rf"|{_LETTER}\s+is\s+(?:the\s+)?(?:correct|right)\b|(?:^|[\s:,*]){_LETTER}[.)*]*\s*\Z",
    re.MULTILINE,
)
# "A or B", "(B) and (D)", "A/B": two letters are a hedge, not an answer (the pronoun "I think" is not).
_OTHER = r"[(*]*(?:[A-HJ-Z]|I(?!\s+[a-z']))(?![A-Za-z0-9])"
_HEDGE_AFTER = re.compile(rf"[)*\]}}]*\s*(?:or|and|/|&|,)\s*{_OTHER}")
_HEDGE_BEFORE = re.compile(r"(?<![A-Za-z0-9])[A-Z][)*\]}]*\s*(?:or|and|/|&|,)\s*[(*]*\Z")


# math-verify reads LaTeX only inside an environment ($...$, \[...\], \boxed{}): a bare MATH gold like
# "\sqrt{18}" parses to nothing and "3\sqrt{2}" to 3, so a gold outside one is wrapped in $...$ (its README;
# maintainers in issues #29, #70, #74). Boxed answers are read first, as in math-verify's own tests.
_MATH_ENV = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed\b")
_MATH_TARGETS = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
# Sentence punctuation inside the closing delimiter ("$\frac{1}{3}.$") makes the LaTeX unparsable, and
# "$2^{10}.$" then reads as 2; math-verify's main branch drops it (test_trailing_punctuation), 0.9.0 not.
_INNER_PUNCT = re.compile(r"(?<=[^\s.,])\s*[.,](?=\s*(?:\$|\\\)|\\\]))")


def final_text(response: str) -> str:
    """The answer part of a response: reasoning in <think>...</think> is no answer, and a rollout cut
    off inside an unclosed <think> answered nothing."""
    return response.rsplit("</think>", 1)[-1].split("<think>", 1)[0]


def _parse_math(text: str) -> list[object]:
    return list(parse(_INNER_PUNCT.sub("", text), _MATH_TARGETS, parsing_timeout=None))


def math_answer(response: str, gold: str) -> float:
    """1.0 when the response's final answer equals the gold one (LaTeX or plain, 1/2 == 0.5, [a, b] is
    a <= x <= b either way round), read from the final_text. math-verify's own timeouts are off: the
    mixture runs rules in worker processes and kills one that overruns (mixture.py, workers.py)."""
    gold = gold.strip()
    gold_parsed = _parse_math(gold if _MATH_ENV.search(gold) else f"${gold}$")
    if not gold_parsed:
        return 0.0
    answer = _parse_math(final_text(response))
    return 1.0 if verify(gold_parsed, answer, allow_set_relation_comp=True, timeout_seconds=None) else 0.0


def choice(response: str) -> str | None:
    """The letter the response answers with, or None: its last explicit commitment, else the last letter
    it names, in the final_text; None for a hedge ("A or B"). NFKC reads full-width letters and brackets
    as ASCII."""
    text = final_text(unicodedata.normalize("NFKC", response))
    for pattern in (CHOICE, _NAMED):
        if found := list(pattern.finditer(text)):
            last = found[-1]
            start, end = last.span(last.lastindex or 0)
            hedged = _HEDGE_AFTER.match(text, end) or _HEDGE_BEFORE.search(text, max(0, start - 40), start)
            return None if hedged else last[last.lastindex or 0]
    return None


def multiple_choice(response: str, gold: str) -> float:
    """1.0 when the response's letter is the gold one, written "B", "(B)", "B." or "b"."""
    letter = re.fullmatch(r"[(\[]?([A-Za-z])[)\].:]?", gold.strip())
    return 1.0 if letter and choice(response) == letter[1].upper() else 0.0
