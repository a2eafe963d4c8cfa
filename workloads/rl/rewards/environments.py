"""Task environments in the InternBootcamp style: each task generates cases, words a prompt, pulls the
answer out of a response and scores it. Generated cases make unlimited verifiable RL data.

  arithmetic-24  numbers and a target, as InternBootcamp's Game24: an expression using each number once
                 that makes the target (24 when a case names none)
  sorting        a list of integers: the list in ascending order
  knights-knaves islanders who always tell the truth (knights) or always lie (knaves): who is which
  letters        n lowercase letters, partial credit per letter (a first task a tiny model can learn)

How each scorer relates to its reference (InternBootcamp's Game24, reasoning-gym's number_sorting and
knights_knaves) is pinned case by case in tests/workloads/agreement/test_environment_agreement.py."""

from __future__ import annotations

import abc
import ast
import itertools
import random
import re
from fractions import Fraction
from typing import Any, Protocol

Case = dict[str, Any]
# <answer> is what our prompts ask for; [answer] is what InternBootcamp's prompts ask for.
ANSWER = re.compile(r"<answer>(.*?)</answer>|\[answer\](.*?)\[/answer\]", re.DOTALL | re.IGNORECASE)
BOXED = re.compile(r"\\boxed\s*\{")


class Task(Protocol):
    name: str

    def case_generator(self, rng: random.Random) -> Case: ...
    def prompt_func(self, case: Case) -> str: ...
    def extract_output(self, text: str) -> str | None: ...
    def verify_score(self, text: str, case: Case) -> float: ...


def last_answer(text: str) -> str | None:
    """The last <answer>...</answer>, [answer]...[/answer] or \\boxed{...} (braces balanced) of a
    response."""
    found = [(m.start(), m.group(1) if m.group(1) is not None else m.group(2)) for m in ANSWER.finditer(text)]
    for m in BOXED.finditer(text):
        depth, end = 1, m.end()
        while depth and end < len(text):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        if not depth:
            found.append((m.start(), text[m.end() : end - 1]))
    return max(found)[1].strip() if found else None


class TaggedAnswer(abc.ABC):
    """A task whose answer is the last tagged or boxed answer of the response; a response without one
    scores 0."""

    def extract_output(self, text: str) -> str | None:
        return last_answer(text)

    def verify_score(self, text: str, case: Case) -> float:
        answer = self.extract_output(text)
        return 0.0 if answer is None else self.score(answer, case)

    @abc.abstractmethod
    def score(self, answer: str, case: Case) -> float:
        """How right `answer` is for `case`, in [0, 1]."""


class Arithmetic24(TaggedAnswer):
    """Cases are {"numbers": [...], "target": n}; InternBootcamp's own {"puzzle": "3 5 7 9", "target":
    "24"} score the same, and a case without a target means 24. Half the generated cases aim at 24, the
    rest at a target from 1 to 100 that a random expression of their numbers makes."""

    name = "arithmetic-24"
    instruction = "Put the expression alone in <answer></answer>."
    # LaTeX and unicode operators a model writes; "**" goes as InternBootcamp drops it (markdown bold),
    # so a power becomes a concatenated number that fails the numbers check.
    notation = {
        "\\times": "*",
        "\\div": "/",
        "\\left": "",
        "\\right": "",
        "\u00d7": "*",
        "\u00f7": "/",
        "**": "",
    }

    def case_generator(self, rng: random.Random) -> Case:
        if rng.random() < 0.5:  # the classic game: four numbers that make 24
            while True:
                numbers = sorted(rng.randint(1, 13) for _ in range(4))
                if _solvable(numbers, Fraction(24)):
                    return {"numbers": numbers, "target": 24}
        # As InternBootcamp does: the target is what a random way of combining the numbers makes.
        numbers = sorted(rng.randint(1, 13) for _ in range(4))
        while True:
            target = _combine_at_random(rng, numbers)
            if target.denominator == 1 and 1 <= target <= 100:
                return {"numbers": numbers, "target": int(target)}

    def prompt_func(self, case: Case) -> str:
        numbers, target = _numbers_and_target(case)
        return (
            f"Use each of the numbers {', '.join(map(str, numbers))} exactly once with +, -, *, / and "
            f"parentheses to make {target}. " + self.instruction
        )

    def score(self, expression: str, case: Case) -> float:
        numbers, target = _numbers_and_target(case)
        for written, meant in self.notation.items():
            expression = expression.replace(written, meant)
        try:
            value, used = _evaluate(ast.parse(expression.strip(), mode="eval").body)
        except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
            return 0.0
        # Exact arithmetic: 8/(3-8/3) is 24, where InternBootcamp's float eval gets 23.99999999999999.
        return 1.0 if value == target and sorted(used) == sorted(numbers) else 0.0


class Sorting(TaggedAnswer):
    """Every number written in the answer, in order, must be the case's list sorted: separators,
    brackets, quotes and words around the list don't matter; 2.0 is 2."""

    name = "sorting"

    def case_generator(self, rng: random.Random) -> Case:
        return {"numbers": [rng.randint(-99, 99) for _ in range(rng.randint(4, 9))]}

    def prompt_func(self, case: Case) -> str:
        return (
            f"Sort these integers in ascending order: {case['numbers']}. "
            "Put the sorted list, comma-separated, in <answer></answer>."
        )

    def score(self, answer: str, case: Case) -> float:
        numbers = [Fraction(x) for x in re.findall(r"-?\d+(?:\.\d+)?", answer)]
        return 1.0 if numbers == sorted(Fraction(str(x)) for x in case["numbers"]) else 0.0


class KnightsAndKnaves(TaggedAnswer):
    """Each islander makes one statement about another ("X is a knight/knave") or about two ("X and
    Y are the same/different kind"); cases are kept only when exactly one assignment fits.

    The answer names the knights: a list ("Ann, Cid", "none"), or sentences that give roles ("Ann is a
    knight, Bob is a knave", "Ann and Cid are knights"), as reasoning-gym's answers do. Knaves need not
    be named. A name left without a role or given two, a role given to nobody after the first, or an
    answer that names nobody without saying "none" scores 0."""

    name = "knights-knaves"
    people = ("Ann", "Bob", "Cid", "Dee")
    roles = {"knight": True, "knights": True, "knave": False, "knaves": False}

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
        knights = self._knights_named(answer, case["names"])
        return 1.0 if knights is not None and sorted(knights) == sorted(case["knights"]) else 0.0

    def _knights_named(self, answer: str, names: list[str]) -> set[str] | None:
        """The knights an answer names, or None when it can't be read."""
        words = [w.lower() for w in re.findall(r"[A-Za-z]+", answer)]
        known = {n.lower(): n for n in names}
        claimed: dict[str, bool] = {}
        if not any(w in self.roles for w in words):  # a plain list of the knights
            claimed = {known[w]: True for w in words if w in known}
        else:
            pending: list[str] = []  # names waiting for the role that follows them
            negated = False  # "Ann is not a knight"
            for w in words:
                if w in known:
                    pending.append(known[w])
                elif w == "not" and pending:
                    negated = True
                elif w in self.roles:
                    if claimed and not pending:  # a second role for nobody: "Ann is a knight or a knave"
                        return None
                    knight = self.roles[w] != negated
                    for n in pending:
                        if claimed.setdefault(n, knight) != knight:
                            return None
                    pending, negated = [], False
            if pending:
                return None
        # Naming nobody has to be said ("none"): an answer without names is no answer.
        if not claimed and not {"none", "nobody", "no"} & set(words):
            return None
        return {n for n, knight in claimed.items() if knight}


class Letters:
    """Our own warm-up task, with no reference to agree with: any reply of the asked length in
    lowercase letters scores 1, with partial credit per letter."""

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


def _numbers_and_target(case: Case) -> tuple[list[int], Fraction]:
    """Our {"numbers": [...], "target": n} or InternBootcamp's {"puzzle": "3 5 7 9", "target": "24"}."""
    numbers = case["numbers"] if "numbers" in case else case["puzzle"]
    if isinstance(numbers, str):
        numbers = numbers.split()
    return [int(n) for n in numbers], Fraction(case.get("target", 24))


def _evaluate(node: ast.expr) -> tuple[Fraction, list[int]]:
    """Exact value and the numbers used, for + - * / (and signs) of integer literals only: no names,
    no calls, no powers."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value), [node.value]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value, used = _evaluate(node.operand)
        return (-value if isinstance(node.op, ast.USub) else value), used
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        (left, a), (right, b) = _evaluate(node.left), _evaluate(node.right)
        ops = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}
        value = ops[type(node.op)] if type(node.op) in ops else left / right
        return value, a + b
    raise ValueError("only integers, + - * / and parentheses")


def _solvable(numbers: list[int], target: Fraction) -> bool:
    """Whether + - * / make `target` using each number once (combining two values at a time covers
    every expression tree)."""

    def reach(values: list[Fraction]) -> bool:
        if len(values) == 1:
            return values[0] == target
        for i, j in itertools.permutations(range(len(values)), 2):
            rest = [v for k, v in enumerate(values) if k not in (i, j)]
            a, b = values[i], values[j]
            results = [a + b, a - b, a * b] + ([a / b] if b else [])
            if any(reach([*rest, r]) for r in results):
                return True
        return False

    return reach([Fraction(n) for n in numbers])


def _combine_at_random(rng: random.Random, numbers: list[int]) -> Fraction:
    """The value of a random expression using each number once."""
    values = [Fraction(n) for n in numbers]
    while len(values) > 1:
        b, a = values.pop(rng.randrange(len(values))), values.pop(rng.randrange(len(values)))
        op = rng.choice("+-*/" if b else "+-*")
        values.append({"+": a + b, "-": a - b, "*": a * b}[op] if op != "/" else a / b)
    return values[0]


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
