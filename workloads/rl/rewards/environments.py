"""Task environments in the InternBootcamp style: each task generates cases, words a prompt, pulls the
answer out of a response and scores it. Generated cases make unlimited verifiable RL data.

  arithmetic-24  four numbers 1-13 (always solvable): an expression using each once that makes 24
  sorting        a list of integers: the list in ascending order
  knights-knaves islanders who always tell the truth (knights) or always lie (knaves): who is which
  letters        n lowercase letters, partial credit per letter (a first task a tiny model can learn)"""

from __future__ import annotations

import abc
import ast
import itertools
import random
import re
from fractions import Fraction
from typing import Any, Protocol

Case = dict[str, Any]
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


class Task(Protocol):
    name: str

    def case_generator(self, rng: random.Random) -> Case: ...
    def prompt_func(self, case: Case) -> str: ...
    def extract_output(self, text: str) -> str | None: ...
    def verify_score(self, text: str, case: Case) -> float: ...


def last_answer(text: str) -> str | None:
    """The last <answer>...</answer> or \\boxed{...} of a response."""
    found = [(m.start(), m.group(1)) for pattern in (ANSWER, BOXED) for m in pattern.finditer(text)]
    return max(found)[1].strip() if found else None


class TaggedAnswer(abc.ABC):
    """A task whose answer is the last <answer>...</answer> (or \\boxed{...}) of the response; a
    response without one scores 0."""

    def extract_output(self, text: str) -> str | None:
        return last_answer(text)

    def verify_score(self, text: str, case: Case) -> float:
        answer = self.extract_output(text)
        return 0.0 if answer is None else self.score(answer, case)

    @abc.abstractmethod
    def score(self, answer: str, case: Case) -> float:
        """How right `answer` is for `case`, in [0, 1]."""


class Arithmetic24(TaggedAnswer):
    name = "arithmetic-24"
    instruction = "Put the expression alone in <answer></answer>."

    def case_generator(self, rng: random.Random) -> Case:
        while True:
            numbers = sorted(rng.randint(1, 13) for _ in range(4))
            if _solvable(numbers):
                return {"numbers": numbers}

    def prompt_func(self, case: Case) -> str:
        numbers = ", ".join(map(str, case["numbers"]))
        return (
            f"Use each of the numbers {numbers} exactly once with +, -, *, / and parentheses to make 24. "
            + self.instruction
        )

    def score(self, expression: str, case: Case) -> float:
        try:
            value, used = _evaluate(
                ast.parse(expression.replace("\u00d7", "*").replace("\u00f7", "/"), mode="eval").body
            )
        except (SyntaxError, ValueError, ZeroDivisionError):
            return 0.0
        return 1.0 if value == 24 and sorted(used) == sorted(case["numbers"]) else 0.0


class Sorting(TaggedAnswer):
    name = "sorting"

    def case_generator(self, rng: random.Random) -> Case:
        return {"numbers": [rng.randint(-99, 99) for _ in range(rng.randint(4, 9))]}

    def prompt_func(self, case: Case) -> str:
        return (
            f"Sort these integers in ascending order: {case['numbers']}. "
            "Put the sorted list, comma-separated, in <answer></answer>."
        )

    def score(self, answer: str, case: Case) -> float:
        numbers = [int(x) for x in re.findall(r"-?\d+", answer)]
        return 1.0 if numbers == sorted(case["numbers"]) else 0.0


class KnightsAndKnaves(TaggedAnswer):
    """Each islander makes one statement about another ("X is a knight/knave") or about two ("X and
    Y are the same/different kind"); cases are kept only when exactly one assignment fits."""

    name = "knights-knaves"
    people = ("Ann", "Bob", "Cid", "Dee")

    def case_generator(self, rng: random.Random) -> Case:
        while True:
            names = list(self.people[: rng.randint(2, 4)])
            truth = {n: rng.random() < 0.5 for n in names}
            statements = [self._statement(rng, speaker, names, truth) for speaker in names]
            solutions = [s for s in _assignments(names) if _consistent(s, statements)]
            if len(solutions) == 1:
                return {
                    "names": names,
                    "statements": statements,
                    "knights": sorted(n for n in names if truth[n]),
                }

    @staticmethod
    def _statement(rng: random.Random, speaker: str, names: list[str], truth: dict[str, bool]) -> list[Any]:
        others = [n for n in names if n != speaker]
        if len(others) >= 2 and rng.random() < 0.4:
            a, b = rng.sample(others, 2)
            claim: list[Any] = ["same", a, b] if rng.random() < 0.5 else ["different", a, b]
        else:
            claim = ["knight" if rng.random() < 0.5 else "knave", rng.choice(others)]
        # A knight's claim is true, a knave's false: flip the claim to fit the speaker.
        if _holds(claim, truth) != truth[speaker]:
            claim[0] = {"knight": "knave", "knave": "knight", "same": "different", "different": "same"}[
                claim[0]
            ]
        return [speaker, *claim]

    def prompt_func(self, case: Case) -> str:
        lines = []
        for speaker, kind, *who in case["statements"]:
            if kind in ("knight", "knave"):
                lines.append(f'{speaker} says: "{who[0]} is a {kind}."')
            else:
                lines.append(f'{speaker} says: "{who[0]} and {who[1]} are of {kind} kinds."')
        return (
            "On an island, knights always tell the truth and knaves always lie. "
            + " ".join(lines)
            + " Who are the knights? Put their names, comma-separated, in <answer></answer> "
            "(write none if there are none)."
        )

    def score(self, answer: str, case: Case) -> float:
        named = sorted({n for n in case["names"] if re.search(rf"\b{n}\b", answer, re.IGNORECASE)})
        return 1.0 if named == case["knights"] else 0.0


class Letters:
    name = "letters"

    def case_generator(self, rng: random.Random) -> Case:
        return {"length": rng.randint(2, 6)}

    def prompt_func(self, case: Case) -> str:
        return f"Reply with exactly {case['length']} lowercase letters and nothing else."

    def extract_output(self, text: str) -> str | None:
        return text.strip() or None

    def verify_score(self, text: str, case: Case) -> float:
        answer, length = self.extract_output(text) or "", int(case["length"])
        hits = sum("a" <= ch <= "z" for ch in answer[:length])
        return hits / length if len(answer) <= length else hits / len(answer)


TASKS: dict[str, Task] = {t.name: t for t in (Arithmetic24(), Sorting(), KnightsAndKnaves(), Letters())}


def _evaluate(node: ast.expr) -> tuple[Fraction, list[int]]:
    """Exact value and the numbers used, for + - * / of integer literals only (no names, no calls)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value), [node.value]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        (left, a), (right, b) = _evaluate(node.left), _evaluate(node.right)
        ops = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}
        value = ops[type(node.op)] if type(node.op) in ops else left / right
        return value, a + b
    raise ValueError("only integers, + - * / and parentheses")


def _solvable(numbers: list[int]) -> bool:
    def reach(values: list[Fraction]) -> bool:
        if len(values) == 1:
            return values[0] == 24
        for i, j in itertools.permutations(range(len(values)), 2):
            rest = [v for k, v in enumerate(values) if k not in (i, j)]
            a, b = values[i], values[j]
            results = [a + b, a - b, a * b] + ([a / b] if b else [])
            if any(reach([*rest, r]) for r in results):
                return True
        return False

    return reach([Fraction(n) for n in numbers])


def _holds(claim: list[Any], truth: dict[str, bool]) -> bool:
    kind, *who = claim
    if kind == "knight":
        return truth[who[0]]
    if kind == "knave":
        return not truth[who[0]]
    same = truth[who[0]] == truth[who[1]]
    return same if kind == "same" else not same


def _assignments(names: list[str]) -> list[dict[str, bool]]:
    return [
        dict(zip(names, bits, strict=True)) for bits in itertools.product([True, False], repeat=len(names))
    ]


def _consistent(truth: dict[str, bool], statements: list[list[Any]]) -> bool:
    return all(_holds(claim, truth) == truth[speaker] for speaker, *claim in statements)
