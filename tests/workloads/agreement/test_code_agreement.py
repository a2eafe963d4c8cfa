"""Code: `sandbox.code_reward` against how the code-RL datasets give their tests and how their reference
checkers score them, case by case (each case spawns Pythons: the table keeps them small).

References (read in their repositories, not copied):
- MBPP:   google-research/google-research mbpp/ (`test_list`: assert statements; a task is solved when
          all of them pass).
- HE:     openai/human-eval human_eval/execution.py `check_correctness` (program + the task's `check`
          function + `check(entry_point)` in one process: passed, failed, or timed out).
- APPS:   hendrycks/apps eval/testing_util.py `run_test` (input_output {"inputs", "outputs"}, optional
          fn_name; standard input per case; per-case results, averaged as the "test case average").
- LCB:    LiveCodeBench/LiveCodeBench lcb_runner/evaluation/testing_util.py `grade_stdio` (both outputs
          stripped, split on "\\n", each line stripped; line counts equal; each line equal, or all
          its whitespace-separated tokens Decimal-equal; SystemExit ends a run normally, an exception
          is a runtime error; `clean_if_name` runs the `if __name__ == '__main__'` block) and its
          test lists [{"input", "output", "testtype"}].
- CC:     google-deepmind/code_contests (public/private/generated tests {"input": [...], "output": [...]}).
- TACO:   BAAI/TACO (APPS's input_output format).

Scores: the share of tests that pass (APPS's test case average). HumanEval and MBPP are all-or-nothing;
where a case passes only some asserts, that difference is in DELIBERATE."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pytest

from vlmop.workloads.rl.rewards import sandbox


class Case(NamedTuple):
    id: str
    response: str
    tests: Any  # as the dataset gives them
    score: float  # the reference checker's score
    source: str
    seconds: float = 3.0  # the wall-clock budget


SQUARE_TESTS = [
    "assert square_perimeter(10)==40",
    "assert square_perimeter(5)==20",
    "assert square_perimeter(4)==16",
]
HE0_TEST = """
METADATA = {'author': 'jt', 'dataset': 'test'}


def check(candidate):
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False
    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False

check(has_close_elements)
"""
HE0_SOLUTION = """```python
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    for i, a in enumerate(numbers):
        for b in numbers[i + 1:]:
            if abs(a - b) < threshold:
                return True
    return False
```"""
SUM = "a, b = map(int, input().split())\nprint(a + b)"
SUM_TESTS = {"inputs": ["1 2\n", "3 4\n", "-5 5\n"], "outputs": ["3\n", "7\n", "0\n"]}


def echo(text: str) -> str:
    """A program that ignores its input and prints `text` as it is."""
    return f"import sys\nsys.stdout.write({text!r})"


CASES = [
    # --- assert lists (MBPP test_list, HumanEval check) ---
    Case("mbpp-solved", "def square_perimeter(a):\n  return 4*a", SQUARE_TESTS, 1.0, "MBPP task 17"),
    Case("mbpp-wrong", "def square_perimeter(a):\n  return 3*a", SQUARE_TESTS, 0.0, "MBPP"),
    Case("mbpp-some-asserts", "def square_perimeter(a):\n  return a*a", SQUARE_TESTS, 0.0, "MBPP: 1 of 3"),
    Case("he-solved-fenced", f"Here it is:\n{HE0_SOLUTION}\nDone.", [HE0_TEST], 1.0, "HE HumanEval/0"),
    Case("he-wrong", "def has_close_elements(numbers, threshold):\n    return True", [HE0_TEST], 0.0, "HE"),
    Case("he-syntax-error", "def has_close_elements(numbers, threshold) return", [HE0_TEST], 0.0, "HE"),
    Case("he-exits-early", "import sys\nsys.exit(0)", [HE0_TEST], 0.0, "HE: no 'passed' result"),
    Case("he-endless", "def has_close_elements(n, t):\n    while True: pass", [HE0_TEST], 0.0, "HE: timeout",
         1.0),
    # --- stdin/stdout: APPS / TACO {"inputs", "outputs"} ---
    Case("apps-input-call", SUM, SUM_TESTS, 1.0, "APPS standard input"),
    Case("apps-stdin-read", "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)",
         SUM_TESTS, 1.0, "APPS"),
    Case("apps-stdin-buffer", "import sys\na, b = map(int, sys.stdin.buffer.readline().split())\n"
         "sys.stdout.buffer.write(b'%d\\n' % (a + b))", SUM_TESTS, 1.0, "APPS (fast I/O idiom)"),
    Case("apps-open-0", "a, b = map(int, open(0).read().split())\nprint(a + b)", SUM_TESTS, 1.0,
         "LCB patches open() to read the input"),
    Case("apps-json-text", SUM, json.dumps(SUM_TESTS), 1.0, "APPS/TACO input_output column (JSON)"),
    Case("apps-two-of-three", "a, b = map(int, input().split())\nprint(a + b if a > 0 else 1)", SUM_TESTS,
         2 / 3, "APPS per-case results, test case average"),
    Case("apps-wrong", "a, b = map(int, input().split())\nprint(a - b)", SUM_TESTS, 0.0, "APPS"),
    Case("taco-main-guard", "def main():\n    a, b = map(int, input().split())\n    print(a + b)\n\n"
         "if __name__ == '__main__':\n    main()", SUM_TESTS, 1.0, "LCB clean_if_name"),
    Case("taco-exit-after-answer", "a, b = map(int, input().split())\nprint(a + b)\nexit()", SUM_TESTS, 1.0,
         "LCB: SystemExit is a normal end"),
    Case("taco-runtime-error-after-answer", f"{SUM}\nraise ValueError('late')", SUM_TESTS, 0.0,
         "LCB: an exception is a runtime error"),
    Case("taco-stderr-ignored", f"import sys\nprint('debug', file=sys.stderr)\n{SUM}", SUM_TESTS, 1.0,
         "LCB captures stdout only"),
    # --- the output comparison (LCB grade_stdio) ---
    Case("out-trailing-space-and-lines", echo("3 \n\n\n"), {"inputs": [""], "outputs": ["3\n"]}, 1.0,
         "LCB strip"),
    Case("out-no-final-newline", echo("3"), {"inputs": [""], "outputs": ["3\n"]}, 1.0, "LCB strip"),
    Case("out-crlf", echo("1 2\r\n3\r\n"), {"inputs": [""], "outputs": ["1 2\n3\n"]}, 1.0, "LCB line strip"),
    Case("out-decimal-equal", echo("1.50\n"), {"inputs": [""], "outputs": ["1.5"]}, 1.0, "LCB Decimal"),
    Case("out-decimal-exponent", echo("1e3"), {"inputs": [""], "outputs": ["1000"]}, 1.0, "LCB Decimal"),
    Case("out-leading-zero", echo("003 -0"), {"inputs": [""], "outputs": ["3 0"]}, 1.0, "LCB Decimal"),
    Case("out-decimal-close-not-equal", echo("0.333333"), {"inputs": [""], "outputs": ["0.3333333333"]}, 0.0,
         "LCB: Decimal equality, no tolerance"),
    Case("out-number-spacing", echo("1   2\t3"), {"inputs": [""], "outputs": ["1 2 3"]}, 1.0, "LCB tokens"),
    Case("out-word-spacing", echo("hello  world"), {"inputs": [""], "outputs": ["hello world"]}, 0.0,
         "LCB: words are not numbers: the line must match"),
    Case("out-case", echo("YES"), {"inputs": [""], "outputs": ["yes"]}, 0.0, "LCB exact"),
    Case("out-extra-line", echo("3\n4"), {"inputs": [""], "outputs": ["3"]}, 0.0, "LCB line counts"),
    Case("out-inner-blank-line", echo("1\n\n2"), {"inputs": [""], "outputs": ["1\n2"]}, 0.0, "LCB lines"),
    Case("out-lines-as-list", echo("1\n2\n"), {"inputs": [["x", "y"]], "outputs": [["1", "2"]]}, 1.0,
         "APPS lists of lines"),
    # --- CodeContests / LiveCodeBench shapes ---
    Case("codecontests", SUM, {"input": ["1 2\n", "10 20\n"], "output": ["3\n", "30\n"]}, 1.0, "CC"),
    Case("livecodebench", SUM, [{"input": "2 2\n", "output": "4\n", "testtype": "stdin"},
                                {"input": "0 0\n", "output": "0\n", "testtype": "stdin"}], 1.0, "LCB"),
    # --- limits ---
    Case("stdio-endless-last-case", "a, b = map(int, input().split())\nwhile a < 0: pass\nprint(a + b)",
         SUM_TESTS, 2 / 3, "APPS: the timed-out case fails, the others count", 1.0),
    Case("stdio-endless-first-case", "a, b = map(int, input().split())\nwhile a == 1: pass\nprint(a + b)",
         SUM_TESTS, 2 / 3, "APPS: each case has its own timeout", 1.0),
    Case("stdio-no-network", f"import socket\nsocket.create_connection(('10.0.0.1', 80))\n{SUM}", SUM_TESTS,
         0.0, "no network in the sandbox (the reference does not stop it: it would time out)"),
    Case("stdio-memory", f"x = bytearray(2**31)\n{SUM}", SUM_TESTS, 0.0, "over the memory limit: an error"),
]  # fmt: skip

# case id -> (our score, why we differ)
DELIBERATE = {
    "mbpp-some-asserts": (1 / 3, "the share of tests passed (APPS's test case average), a denser signal"),
    "stdio-endless-first-case": (0.0, "one wall-clock budget for all cases: a hang spends it for the rest"),
}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_code_scores_agree_with_the_reference_checkers(case: Case) -> None:
    score = sandbox.code_reward(case.response, case.tests, sandbox.Limits(seconds=case.seconds))
    if case.id in DELIBERATE:
        ours, _why = DELIBERATE[case.id]
        assert ours != pytest.approx(case.score)
        assert score == pytest.approx(ours)
    else:
        assert score == pytest.approx(case.score)


def test_the_code_table_is_large_and_honest() -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    assert set(DELIBERATE) <= {c.id for c in CASES}


def test_the_expected_output_never_enters_the_sandbox() -> None:
    # A program that hunts the interpreter for the expected output finds nothing to print.
    snoop = """import gc
want, here = "".join(reversed("24-terces")), globals()  # no constant of ours holds it
containers = [o for o in gc.get_objects() if isinstance(o, list | tuple | dict) and o is not here]
print(want if any(want in (o.values() if isinstance(o, dict) else o) for o in containers) else "nothing")
"""
    assert sandbox.code_reward(snoop, {"inputs": [""], "outputs": ["secret-42"]}) == 0.0


@pytest.mark.parametrize(
    "tests",
    [
        {"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"},  # APPS call-based
        [{"input": "1\n2", "output": "3", "testtype": "functional"}],  # LiveCodeBench functional
        {"inputs": ["1"], "outputs": []},
    ],
    ids=["apps-fn-name", "lcb-functional", "unpaired"],
)
def test_tests_we_do_not_run_are_refused_not_scored(tests: Any) -> None:
    with pytest.raises(ValueError, match=r"call-based|not a stdin|inputs for"):
        sandbox.code_reward("def add(a, b):\n    return a + b", tests)
