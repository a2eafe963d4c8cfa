"""Reference agreement for the task environments (workloads/rl/rewards/environments.py), case by case.

Each row: a case (the gold), a response, the score the REFERENCE gives it (worked out from the
reference's code and tests, not from ours) and where that behaviour comes from. Our environment must give
the reference's score, except for the rows in DELIBERATE, where it must give the different score written
there, for the reason written there.

References:
- arithmetic-24: InternBootcamp's Game24 (InternLM/InternBootcamp internbootcamp/bootcamp/game24/
  game_default.py): cases {"puzzle": "3 5 7 9", "target": "24"}; the answer is the last \\boxed{} (braces
  balanced); "**" is deleted, \\times \\div \\left \\right are rewritten; the digit runs must be exactly the
  puzzle's numbers; "//" is refused; Python eval() of the rest must equal int(target). Its __main__
  examples are rows ib-main-*.
- sorting: InternBootcamp has no number-sorting bootcamp. reasoning-gym's number_sorting
  (open-thought/reasoning-gym reasoning_gym/algorithmic/number_sorting.py score_answer, with
  reasoning_gym/utils.py extract_answer: the last <answer>): a JSON list (quotes ' become "), the same
  length, sorted, each within 0.1 of the gold. For the comma-separated form our prompt asks for:
  InternBootcamp's word sorting (internbootcamp/bootcamp/word_sorting/word_sorting.py, pure_sort): the
  first [answer]...[/answer], json.loads or else split on commas and strip, compared to the sorted list.
- knights-knaves: InternBootcamp has no knights-and-knaves bootcamp (its bootcamp list and
  Fulllist_InternBootcamp.md have none). reasoning-gym's knights_knaves (reasoning_gym/logic/
  knights_knaves.py score_answer and tests/test_knights_knaves.py): the answer is read as (name, role)
  pairs, a role going to the word just before it ("is", "a", "an", ".", ",", "(", ")" skipped); 1.0 when
  the pairs equal the gold's "Ann is a knight, Bob is a knave, and Cid is a knight." pairs, 0.3 + 0.7 *
  matches / n when there are as many pairs and some match, else 0. Logic-RL (zhiyuanhubj/Logic-RL
  verl/utils/reward_score/kk.py), the K&K RL reward: for each of the puzzle's names, the first
  knight|knave after it in the last <answer>; right when all match.
- letters: our own warm-up task; no reference, so no table.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple

import pytest

from vlmop.workloads.rl.rewards.environments import TASKS


class Row(NamedTuple):
    id: str
    case: dict[str, Any]
    response: str
    ref: float  # the reference's score
    source: str


IB_24 = "InternBootcamp game24/game_default.py"
IB_24_MAIN = "InternBootcamp game24/game_default.py __main__ examples"
IB_SORT = "InternBootcamp word_sorting/word_sorting.py pure_sort"
RG_SORT = "reasoning-gym algorithmic/number_sorting.py score_answer"
RG_KK = "reasoning-gym logic/knights_knaves.py score_answer"
RG_KK_TEST = "reasoning-gym tests/test_knights_knaves.py (forms, our names and roles)"
LOGIC_RL = "Logic-RL verl/utils/reward_score/kk.py"

P24 = {"puzzle": "1 5 9 13", "target": "24"}  # (13-9)*(1+5)
P30 = {"puzzle": "5 9 10 11", "target": "30"}

GAME24 = [
    # InternBootcamp's own examples (the first two are wrong answers: 35 and 61).
    Row("ib-main-1", {"puzzle": "6 6 6 6", "target": "24"}, r"\boxed{6*6-6/6}", 0, IB_24_MAIN),
    Row("ib-main-2", {"puzzle": "5 9 10 20", "target": "30"}, r"\boxed{5*10-9+20}", 0, IB_24_MAIN),
    Row("ib-main-3", P30, r"\boxed{5 * 10-9-11}", 1, IB_24_MAIN),
    Row("ib-main-4", P30, r"\boxed{5 \times 10-(9+11)}", 1, IB_24_MAIN),
    Row("ib-main-5", P30, r"\boxed{5\times10-9+11}", 0, IB_24_MAIN),
    Row("ib-main-6", {"puzzle": [0, 1, 3, 4], "target": "7"}, r"\boxed{(4 + 3) / (1 + 0)}", 0, IB_24_MAIN),
    # Case shapes and targets.
    Row("24-plain", P24, r"\boxed{(13-9)*(1+5)}", 1, IB_24),
    Row("24-int-target", {"puzzle": "1 5 9 13", "target": 24}, r"\boxed{(13-9)*(1+5)}", 1, IB_24),
    Row(
        "24-our-shape", {"numbers": [1, 5, 9, 13], "target": 24}, r"\boxed{(13-9)*(1+5)}", 0, IB_24
    ),  # KeyError
    Row("24-other-target", {"puzzle": "1 5 9 13", "target": "30"}, r"\boxed{(13-9)*(1+5)}", 0, IB_24),
    Row("24-no-target", {"numbers": [1, 5, 9, 13]}, r"\boxed{(13-9)*(1+5)}", 0, IB_24),  # KeyError
    Row("24-target-0", {"puzzle": "0 1 3 4", "target": "0"}, r"\boxed{0*(1+3+4)}", 1, IB_24),
    # Extraction.
    Row("24-text-around", P24, r"So the answer is $\boxed{(13-9)*(1+5)}$.", 1, IB_24),
    Row("24-spaces", P24, r"\boxed{ ( 13 - 9 ) * ( 1 + 5 ) }", 1, IB_24),
    Row("24-last-boxed", P24, r"\boxed{(13-9)*(1+5)} no: \boxed{(13+9)*(1+5)}", 0, IB_24),
    Row("24-last-boxed-braces", P24, r"\boxed{(13-9)*(1+5)} or \boxed{\frac{48}{2}}", 0, IB_24),
    Row("24-answer-tag-only", P24, "<answer>(13-9)*(1+5)</answer>", 0, IB_24),
    Row("24-boxed-space", P24, r"\boxed (13-9)*(1+5)$", 1, IB_24),
    Row("24-equals-after", P24, r"\boxed{(13-9)*(1+5) = 24}", 0, IB_24),
    Row("24-equals-before", P24, r"\boxed{24 = (13-9)*(1+5)}", 0, IB_24),
    Row("24-words-inside", P24, r"\boxed{Answer: (13-9)*(1+5)}", 0, IB_24),
    # Notation.
    Row("24-left-right", P24, r"\boxed{\left(13-9\right)\times\left(1+5\right)}", 1, IB_24),
    Row("24-div", {"puzzle": "1 3 4 6", "target": "24"}, r"\boxed{6 \div (1 - 3 \div 4)}", 1, IB_24),
    Row("24-cdot", P24, r"\boxed{(13-9)\cdot(1+5)}", 0, IB_24),
    Row("24-unicode-times", P24, "\\boxed{(13-9)\u00d7(1+5)}", 0, IB_24),
    Row("24-unicode-div", {"puzzle": "1 3 4 6", "target": "24"}, "\\boxed{6\u00f7(1-3\u00f74)}", 0, IB_24),
    Row("24-markdown-bold", P24, r"\boxed{**(13-9)*(1+5)**}", 1, IB_24),
    Row("24-implicit-times", P24, r"\boxed{(13-9)(1+5)}", 0, IB_24),
    Row("24-square-brackets", P24, r"\boxed{[13-9]*[1+5]}", 0, IB_24),
    Row("24-unary-minus", {"puzzle": "1 2 3 4", "target": "24"}, r"\boxed{-(1+2+3)*(-4)}", 1, IB_24),
    # Operators the reference refuses, or lets through by accident.
    Row("24-power", {"puzzle": "1 2 3 3", "target": "24"}, r"\boxed{2**3*3*1}", 0, IB_24),  # "23*3*1"
    Row("24-floor-div", {"puzzle": "1 1 3 8", "target": "24"}, r"\boxed{8//1*3*1}", 0, IB_24),
    Row("24-xor", {"puzzle": "1 1 8 16", "target": "24"}, r"\boxed{16^8*1*1}", 1, IB_24),  # 16 ^ 8 = 24
    Row("24-modulo", {"puzzle": "1 1 26 50", "target": "24"}, r"\boxed{50%26*1*1}", 1, IB_24),
    Row("24-decimal-point", {"puzzle": "1 5 16", "target": "24"}, r"\boxed{1.5*16}", 1, IB_24),
    # Using the numbers.
    Row("24-number-twice", P24, r"\boxed{(13-9)*(5+5)}", 0, IB_24),
    Row("24-number-missing", P24, r"\boxed{(13-9)*6}", 0, IB_24),
    Row("24-number-extra", P24, r"\boxed{(13-9)*(1+5)*1}", 0, IB_24),
    Row("24-concatenated", {"puzzle": "1 3 2 12", "target": "24"}, r"\boxed{13-1+12}", 0, IB_24),
    Row("24-wrong-value", P24, r"\boxed{(13+9)*(1+5)}", 0, IB_24),
    Row("24-divide-by-zero", {"puzzle": "1 1 5 5", "target": "24"}, r"\boxed{5*5/(1-1)}", 0, IB_24),
    # Division through fractions: exact in floats here, not in 8/(3-8/3) (eval gives 23.99999999999999).
    Row("24-fraction-exact-float", {"puzzle": "1 5 5 5", "target": "24"}, r"\boxed{(5-1/5)*5}", 1, IB_24),
    Row("24-fraction-6-1-3-4", {"puzzle": "1 3 4 6", "target": "24"}, r"\boxed{6/(1-3/4)}", 1, IB_24),
    Row("24-fraction-8-3-8-3", {"puzzle": "3 3 8 8", "target": "24"}, r"\boxed{8/(3-8/3)}", 0, IB_24),
]

SORT_CASE = {"numbers": [5, -3, 12, 1]}  # reasoning-gym's gold: "['-3', '1', '5', '12']", ascending

SORTING = [
    Row("rg-quoted", SORT_CASE, "<answer>['-3', '1', '5', '12']</answer>", 1, RG_SORT),
    Row("rg-double-quoted", SORT_CASE, '<answer>["-3", "1", "5", "12"]</answer>', 1, RG_SORT),
    Row("rg-json", SORT_CASE, "<answer>[-3, 1, 5, 12]</answer>", 1, RG_SORT),
    Row("rg-no-spaces", SORT_CASE, "<answer>[-3,1,5,12]</answer>", 1, RG_SORT),
    Row("rg-loose-spaces", SORT_CASE, "<answer>[ -3 ,  1 , 5 ,12 ]</answer>", 1, RG_SORT),
    Row("rg-newlines", SORT_CASE, "<answer>[\n-3,\n1,\n5,\n12\n]</answer>", 1, RG_SORT),
    Row("rg-floats", SORT_CASE, "<answer>[-3.0, 1.0, 5.0, 12.0]</answer>", 1, RG_SORT),
    Row("rg-within-tolerance", SORT_CASE, "<answer>[-3, 1.05, 5, 12]</answer>", 1, RG_SORT),
    Row("rg-descending", SORT_CASE, "<answer>[12, 5, 1, -3]</answer>", 0, RG_SORT),
    Row("rg-unsorted", SORT_CASE, "<answer>[-3, 5, 1, 12]</answer>", 0, RG_SORT),
    Row("rg-as-given", SORT_CASE, "<answer>[5, -3, 12, 1]</answer>", 0, RG_SORT),
    Row("rg-missing", SORT_CASE, "<answer>[-3, 1, 12]</answer>", 0, RG_SORT),
    Row("rg-duplicated", SORT_CASE, "<answer>[-3, 1, 1, 5, 12]</answer>", 0, RG_SORT),
    Row("rg-one-replaced", SORT_CASE, "<answer>[-3, 1, 1, 12]</answer>", 0, RG_SORT),
    Row("rg-extra", SORT_CASE, "<answer>[-3, 1, 5, 12, 20]</answer>", 0, RG_SORT),
    Row("rg-sign-dropped", SORT_CASE, "<answer>[1, 3, 5, 12]</answer>", 0, RG_SORT),
    Row("rg-1.2-for-12", SORT_CASE, "<answer>[-3, 1, 1.2, 5]</answer>", 0, RG_SORT),
    Row("rg-no-tags", SORT_CASE, "[-3, 1, 5, 12]", 0, RG_SORT),
    Row("rg-empty", SORT_CASE, "<answer></answer>", 0, RG_SORT),
    Row("rg-empty-list", SORT_CASE, "<answer>[]</answer>", 0, RG_SORT),
    Row(
        "rg-last-answer",
        SORT_CASE,
        "<answer>[12, 5, 1, -3]</answer> no: <answer>[-3, 1, 5, 12]</answer>",
        1,
        RG_SORT,
    ),
    Row("rg-unclosed", SORT_CASE, "<answer>[-3, 1, 5, 12</answer>", 0, RG_SORT),
    Row("rg-parentheses", SORT_CASE, "<answer>(-3, 1, 5, 12)</answer>", 0, RG_SORT),
    Row("rg-nested", SORT_CASE, "<answer>[[-3, 1, 5, 12]]</answer>", 0, RG_SORT),
    Row("rg-words-around", SORT_CASE, "<answer>The sorted list is [-3, 1, 5, 12].</answer>", 0, RG_SORT),
    Row("rg-spaces-only", SORT_CASE, "<answer>-3 1 5 12</answer>", 0, RG_SORT),
    Row("rg-boxed", SORT_CASE, r"\boxed{[-3, 1, 5, 12]}", 0, RG_SORT),
    Row("rg-repeats", {"numbers": [2, -1, 2]}, "<answer>[-1, 2, 2]</answer>", 1, RG_SORT),
    Row("rg-repeat-dropped", {"numbers": [2, -1, 2]}, "<answer>[-1, 2]</answer>", 0, RG_SORT),
    Row("ib-commas", SORT_CASE, "[answer]-3, 1, 5, 12[/answer]", 1, IB_SORT),
    Row("ib-commas-tight", SORT_CASE, "[answer]-3,1,5,12[/answer]", 1, IB_SORT),
    Row("ib-commas-loose", SORT_CASE, "[answer] -3 ,1 ,  5, 12 [/answer]", 1, IB_SORT),
    Row("ib-commas-unsorted", SORT_CASE, "[answer]-3, 5, 1, 12[/answer]", 0, IB_SORT),
    Row("ib-unicode-minus", SORT_CASE, "[answer]\u22123, 1, 5, 12[/answer]", 0, IB_SORT),
    Row("ib-trailing-period", SORT_CASE, "[answer]-3, 1, 5, 12.[/answer]", 0, IB_SORT),
    Row(
        "ib-first-answer",
        SORT_CASE,
        "[answer]12, 5, 1, -3[/answer] no: [answer]-3, 1, 5, 12[/answer]",
        0,
        IB_SORT,
    ),
]

NAMES = ["Ann", "Bob", "Cid"]
# Puzzles with exactly one solution (checked below); reasoning-gym's gold answer is the comment.
KK_AC = {  # "Ann is a knight, Bob is a knave, and Cid is a knight."
    "names": NAMES,
    "statements": [["Ann", "knight", "Cid"], ["Bob", "knave", "Ann"], ["Cid", "different", "Ann", "Bob"]],
    "knights": ["Ann", "Cid"],
}
KK_B = {  # "Ann is a knave, Bob is a knight, and Cid is a knave."
    "names": NAMES,
    "statements": [["Ann", "knight", "Cid"], ["Bob", "knave", "Ann"], ["Cid", "same", "Ann", "Bob"]],
    "knights": ["Bob"],
}
KK_NONE = {  # "Ann is a knave, Bob is a knave, and Cid is a knave."
    "names": NAMES,
    "statements": [["Ann", "knight", "Bob"], ["Bob", "knight", "Cid"], ["Cid", "different", "Ann", "Bob"]],
    "knights": [],
}


def kk(id: str, case: dict[str, Any], answer: str, ref: float, source: str = RG_KK) -> Row:
    return Row(id, case, f"<answer>{answer}</answer>", ref, source)


KNIGHTS = [
    kk("rg-gold", KK_AC, "Ann is a knight, Bob is a knave, and Cid is a knight.", 1, RG_KK_TEST),
    kk("rg-reordered", KK_AC, "Cid is a knight, Ann is a knight, and Bob is a knave.", 1, RG_KK_TEST),
    kk("rg-pairs", KK_AC, "(Ann, knight), (Bob, knave), (Cid, knight)", 1, RG_KK_TEST),
    kk("rg-pairs-reordered", KK_AC, "(Bob,knave), (Cid,knight), (Ann,knight)", 1, RG_KK_TEST),
    kk("rg-terse", KK_AC, "Ann knight, Bob knave, Cid knight", 1, RG_KK_TEST),
    kk(
        "rg-half-right",
        KK_AC,
        "Ann is a knight, Bob is a knight, and Cid is a knight.",
        0.3 + 0.7 * 2 / 3,
        RG_KK_TEST,
    ),
    kk("rg-all-swapped", KK_AC, "Ann knave Bob knight Cid knave", 0, RG_KK_TEST),
    kk("rg-lowercase", KK_AC, "ann is a knight, bob is a knave, and cid is a knight", 1),
    kk("rg-lines", KK_AC, "Ann is a knight\nBob is a knave\nCid is a knight", 1),
    kk("rg-spaces", KK_AC, "Ann  is   a knight ,  Bob is a knave , Cid is a knight", 1),
    kk("rg-prose-before", KK_AC, "After checking, Ann is a knight, Bob is a knave, and Cid is a knight.", 1),
    kk("rg-numbered", KK_AC, "(1) Ann is a knight (2) Bob is a knave (3) Cid is a knight", 1),
    kk("rg-knaves-unnamed", KK_AC, "Ann is a knight, and Cid is a knight.", 0),
    kk("rg-plural", KK_AC, "Ann and Cid are knights, and Bob is a knave.", 0),  # "knights" is no role
    kk("rg-list", KK_AC, "Ann, Cid", 0),
    kk("rg-list-reordered", KK_AC, "Cid, Ann", 0),
    kk("rg-list-brackets", KK_AC, "[Ann, Cid]", 0),
    kk("rg-list-extra", KK_AC, "Ann, Bob, Cid", 0),
    kk("rg-list-missing", KK_AC, "Cid", 0),
    kk("rg-extra-name", KK_AC, "Ann is a knight, Bob is a knave, Cid is a knight, and Dee is a knight.", 0),
    kk("rg-negation", KK_AC, "Ann is not a knave, Bob is a knave, and Cid is a knight.", 0.3 + 0.7 * 2 / 3),
    kk(
        "rg-filler-word",
        KK_AC,
        "Ann is surely a knight, Bob is a knave, and Cid is a knight.",
        0.3 + 0.7 * 2 / 3,
    ),
    kk("rg-colons", KK_AC, "Ann: knight, Bob: knave, Cid: knight", 0),  # "ann:" is not "ann"
    kk("rg-contradiction", KK_AC, "Ann is a knight, Bob is a knave, Cid is a knight, Ann is a knave.", 0),
    kk("rg-hedge", KK_AC, "Ann is a knight or a knave, Bob is a knave, and Cid is a knight.", 0),
    kk("rg-one-knight-gold", KK_B, "Ann is a knave, Bob is a knight, and Cid is a knave.", 1),
    kk("rg-one-knight-short", KK_B, "Bob is a knight.", 0),
    kk("rg-one-knight-list", KK_B, "Bob", 0),
    kk(
        "rg-one-knight-wrong", KK_B, "Ann is a knight, Bob is a knave, and Cid is a knave.", 0.3 + 0.7 * 1 / 3
    ),
    kk("rg-no-knights-gold", KK_NONE, "Ann is a knave, Bob is a knave, and Cid is a knave.", 1),
    kk("rg-no-knights-none", KK_NONE, "none", 0),
    kk("rg-no-knights-empty", KK_NONE, "", 0),
    kk("rg-no-knights-nonsense", KK_NONE, "NONSENSE", 0),
    Row("rg-kk-no-tags", KK_AC, "Ann is a knight, Bob is a knave, and Cid is a knight.", 0, RG_KK),
    kk("lrl-reordered", KK_AC, "Bob is a knave; Cid is a knight; Ann is a knight.", 1, LOGIC_RL),
    kk(
        "lrl-extra-name",
        KK_AC,
        "Ann is a knight, Bob is a knave, Cid is a knight, Dee is a knight.",
        1,
        LOGIC_RL,
    ),
    kk("lrl-plural", KK_B, "Ann and Cid are knaves, Bob is a knight.", 0, LOGIC_RL),  # "knaves" is no role
    kk("lrl-list", KK_B, "Bob", 0, LOGIC_RL),
]

LIST_FORM = "our prompt asks for the knights' names, comma-separated, or none; the reference wants every role"
ONLY_KNIGHTS = "our question is who the knights are: naming only the knights is a full answer"
PASS_FAIL = "environments reward pass/fail: reasoning-gym's partial credit for a wrong assignment is 0 here"
LENIENT_LIST = "the answer is the numbers in order: separators, brackets and words around them don't matter"
PLURAL = "'Ann and Cid are knights' gives both a role; the references only read singular roles"

# Case id -> (our score, why it differs from the reference's).
DELIBERATE: dict[str, tuple[float, str]] = {
    # arithmetic-24
    "ib-main-6": (1, "a puzzle given as a list is read; the reference crashes on list.split() and scores 0"),
    "24-our-shape": (1, "our own case shape {numbers, target}; the reference reads only 'puzzle'"),
    "24-no-target": (
        1,
        "a case without a target means 24, so our earlier data keeps scoring (KeyError there)",
    ),
    "24-answer-tag-only": (1, "our prompt asks for <answer></answer>; \\boxed{} is read as well"),
    "24-boxed-space": (0, "the brace-less '\\boxed expr$' form is not read: rare, and its end is a guess"),
    "24-unicode-times": (1, "\u00d7 is multiplication; the reference's eval() fails on it"),
    "24-unicode-div": (1, "\u00f7 is division; the reference's eval() fails on it"),
    "24-xor": (0, "^ is no arithmetic operator; the reference's eval() computes XOR and takes 16^8 = 24"),
    "24-modulo": (0, "% is no arithmetic operator; the reference's eval() lets 50%26 = 24 through"),
    "24-decimal-point": (
        0,
        "1.5 is not 1 and 5 combined by an operator; the reference only counts digit runs",
    ),
    "24-fraction-8-3-8-3": (
        1,
        "exact fractions: 8/(3-8/3) is 24; the reference's float eval gets 23.99999999999999",
    ),
    # sorting
    "rg-within-tolerance": (
        0,
        "our numbers are integers: 1.05 is not 1 (the reference's 0.1 slack is for decimals)",
    ),
    "rg-unclosed": (1, LENIENT_LIST),
    "rg-parentheses": (1, LENIENT_LIST),
    "rg-nested": (1, LENIENT_LIST),
    "rg-words-around": (1, LENIENT_LIST),
    "rg-spaces-only": (1, LENIENT_LIST),
    "rg-boxed": (1, "a \\boxed{} answer is read like an <answer> one"),
    "ib-trailing-period": (1, LENIENT_LIST),
    "ib-first-answer": (
        1,
        "the last answer counts (a model corrects itself), as in reasoning-gym and Game24",
    ),
    # knights-knaves
    "rg-half-right": (0, PASS_FAIL),
    "rg-negation": (1, "'Ann is not a knave' says Ann is a knight; the reference reads ('not', knave)"),
    "rg-filler-word": (
        1,
        "words that are not names are skipped; the reference takes the word before the role",
    ),
    "rg-colons": (1, "punctuation around names is ignored; the reference keeps ':' in 'ann:'"),
    "rg-knaves-unnamed": (1, ONLY_KNIGHTS),
    "rg-plural": (1, PLURAL),
    "rg-list": (1, LIST_FORM),
    "rg-list-reordered": (1, LIST_FORM),
    "rg-list-brackets": (1, LIST_FORM),
    "rg-one-knight-short": (1, ONLY_KNIGHTS),
    "rg-one-knight-list": (1, LIST_FORM),
    "rg-one-knight-wrong": (0, PASS_FAIL),
    "rg-no-knights-none": (1, LIST_FORM),
    "lrl-list": (1, LIST_FORM),
    "lrl-plural": (1, PLURAL),
    "lrl-extra-name": (0, "a role for a name outside the puzzle spoils the answer, as in reasoning-gym"),
}

TABLES = {"arithmetic-24": GAME24, "sorting": SORTING, "knights-knaves": KNIGHTS}
ROWS = [(task, row) for task, rows in TABLES.items() for row in rows]


@pytest.mark.parametrize(("task", "row"), ROWS, ids=[f"{task}:{row.id}" for task, row in ROWS])
def test_environment_agrees_with_its_reference(task: str, row: Row) -> None:
    ours = TASKS[task].verify_score(row.response, row.case)
    if row.id in DELIBERATE:
        expected, why = DELIBERATE[row.id]
        assert expected != pytest.approx(row.ref), (
            f"{row.id} agrees with the reference: drop it from DELIBERATE"
        )
        assert ours == expected, why
    else:
        assert ours == pytest.approx(row.ref), (
            f"{row.id}: reference ({row.source}) gives {row.ref}, we give {ours}"
        )


def test_tables_are_big_enough_and_deliberate_names_real_rows() -> None:
    assert all(len(rows) >= 30 for rows in TABLES.values())
    ids = [row.id for _, row in ROWS]
    assert len(ids) == len(set(ids))
    assert set(DELIBERATE) <= set(ids)


@pytest.mark.parametrize("case", [KK_AC, KK_B, KK_NONE])
def test_knights_cases_are_puzzles_with_one_solution(case: dict[str, Any]) -> None:
    from vlmop.workloads.rl.rewards.environments import _assignments, _consistent

    solutions = [s for s in _assignments(case["names"]) if _consistent(s, case["statements"])]
    assert [sorted(n for n, knight in s.items() if knight) for s in solutions] == [case["knights"]]


def test_arithmetic_cases_carry_targets_and_the_prompt_names_them() -> None:
    task, rng = TASKS["arithmetic-24"], random.Random(3)  # noqa: S311 (test data)
    cases = [task.case_generator(rng) for _ in range(30)]
    targets = {case["target"] for case in cases}
    assert 24 in targets and len(targets) >= 5
    for case in cases:
        assert f"to make {case['target']}." in task.prompt_func(case)
    assert "to make 30." in task.prompt_func({"puzzle": "5 9 10 11", "target": "30"})
    assert "to make 24." in task.prompt_func({"numbers": [1, 5, 9, 13]})
