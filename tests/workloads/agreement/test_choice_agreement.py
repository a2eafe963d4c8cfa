"""Multiple choice: `rules.multiple_choice` against the reference answer extractors, case by case.

Each case's expected score is what the cited reference extractor gives (or, where the references
disagree, what the one that rewards exactly the committed answer gives; the note says which and why).
A case we score differently on purpose goes in DELIBERATE, with our score and the reason.

References (read in their repositories, not copied):
- MMMU:    MMMU-Benchmark/MMMU eval/eval_utils.py `parse_multi_choice_response` (bracketed letters
           first, then space-delimited letters, last occurrence wins; option-text match; random guess).
- OC:      open-compass/opencompass opencompass/utils/text_postprocessors.py `first_option_postprocess`
           (ordered patterns: "答案是", "ANSWER:", "the (correct) answer is (option)", "...boxed{X}",
           a letter ending the text); OC-TEST: tests/utils/test_text_postprocessors.py;
           OC-THINK: `extract_non_reasoning_content` (keep what follows </think>; an unclosed <think>
           drops the rest).
- VLMEK:   open-compass/VLMEvalKit vlmeval/utils/matching_util.py `can_infer_option` (punctuation
           to spaces; exactly one letter token -> that letter; several letters -> cannot infer).
- GPQA:    EleutherAI/lm-evaluation-harness lm_eval/tasks/gpqa/cot_zeroshot/ (`_gpqa_cot_zeroshot_yaml`
           flexible-extract: the last "\\([A-Z]\\)"; `utils.py`: golds are "(A)".."(D)"; exact_match
           with ignore_case and ignore_punctuation).
- MMLUPRO: EleutherAI/lm-evaluation-harness lm_eval/tasks/mmlu_pro/_default_template_yaml
           ('answer is \\(?([ABCDEFGHIJ])\\)?', case-sensitive) and TIGER-AI-Lab/MMLU-Pro
           evaluate_from_api.py (`extract_answer` -> `extract_again` '.*[aA]nswer:\\s*([A-J])' ->
           `extract_final`, the last standalone [A-J]).
- SE:      openai/simple-evals common.py (`ANSWER_PATTERN_MULTICHOICE`
           '(?i)Answer[ \\t]*:[ \\t]*\\$?([A-D])\\$?', `normalize_response` drops ** and $\\boxed{ / \\text{
           wrappers, `normalize_extracted_answer` maps full-width letters; no match -> None -> score 0).

Where they disagree we follow these rules (each is the reading that rewards exactly the answer the
model commits to): the LAST commitment wins (MMMU, GPQA flexible-extract; OC and TIGER take the first);
an explicit "answer is / Answer: / \\boxed{}" outranks a letter merely named while reasoning (OC, SE,
MMLUPRO; MMMU prefers any bracketed letter); a hedge naming two letters is no answer (VLMEK); only
capital letters are choices, so "a number" and "(i)" are not (MMMU, MMLUPRO, OC; SE and GPQA ignore
case); the pronoun "I" is not a choice unless committed to ("Answer: I" is option I of ten).
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from vlmop.workloads.rl.rewards import rules


class Case(NamedTuple):
    id: str
    response: str
    gold: str
    score: float  # the reference's score
    source: str  # which reference, and the note where the references disagree


CASES = [
    # --- explicit commitments: "answer is", "Answer:", \boxed{}, "correct option is" ---
    Case("answer-is", "The answer is B", "B", 1.0, "MMLUPRO 'answer is \\(?X\\)?'"),
    Case("answer-is-paren-ten-options", "The answer is (J).", "J", 1.0, "MMLUPRO (options A-J)"),
    Case("answer-is-colon", "The answer is: C", "C", 1.0, "OC '[Tt]he answer is:?\\s+\\(?X\\)?'"),
    Case("answer-colon", "Answer: B", "B", 1.0, "SE ANSWER_PATTERN_MULTICHOICE"),
    Case("answer-colon-lowercase-key", "answer: B", "B", 1.0, "SE (?i) on the key; MMLUPRO [aA]nswer:"),
    Case(
        "answer-last-line",
        "Let's compare the options.\nA) too small\nC) too large\nAnswer: D",
        "D",
        1.0,
        "SE: the prompt asks for a last line 'Answer: $LETTER'",
    ),
    Case("answer-bold-key", "**Answer:** C", "C", 1.0, "SE normalize_response drops '**'"),
    Case("answer-bold-letter", "The answer is **C**.", "C", 1.0, "OC 'answer is:?\\s+\\(?\\*?\\*?X'"),
    Case("answer-dollar-letter", "Answer: $C$", "C", 1.0, "SE '\\$?([A-D])\\$?'"),
    Case("boxed", "\\boxed{C}", "C", 1.0, "OC '...boxed{X}'; SE normalize_response"),
    Case("boxed-text", "$\\boxed{\\text{C}}$", "C", 1.0, "SE normalize_response drops $\\boxed{ and \\text"),
    Case(
        "boxed-in-sentence",
        "The correct answer is $\\boxed{D}$.",
        "D",
        1.0,
        "OC 'correct answer is:?.*?boxed{X}'",
    ),
    Case(
        "boxed-then-pronoun",
        "Therefore, the final answer is $\\boxed{B}$. I hope it is correct.",
        "B",
        1.0,
        "OC boxed pattern; a trailing pronoun 'I' is no choice",
    ),
    Case("correct-option-is", "The correct option is D.", "D", 1.0, "OC (a letter ending the text)"),
    Case(
        "answer-is-option",
        "The correct answer is option B.",
        "B",
        1.0,
        "OC '[Tt]he correct answer is option'",
    ),
    Case(
        "answer-to-question",
        "The answer to the question is (A).",
        "A",
        1.0,
        "OC '[Tt]he answer to the question is'",
    ),
    Case(
        "answer-choice-paren",
        "The correct answer choice is (E).",
        "E",
        1.0,
        "GPQA flexible-extract (last (X))",
    ),
    Case("answer-is-paren-with-text", "The answer is (B) 4 m/s.", "B", 1.0, "MMLUPRO 'answer is \\(?X\\)?'"),
    Case("final-choice-bold", "Final choice: **D**", "D", 1.0, "VLMEK (one letter token after ':' and '*')"),
    Case("chinese-answer", "答案是 B", "B", 1.0, "OC-TEST: first_option_postprocess('答案是 B') == 'B'"),
    Case("chinese-answer-colon", "答案\uff1aC", "C", 1.0, "OC '答案是?\\s*(full-width colon)\\s*X'"),
    Case("fullwidth-letter", "Answer: \uff22", "B", 1.0, "SE normalize_extracted_answer maps full-width B"),
    # --- a letter named without a commitment word ---
    Case("issue-i-think-paren", "I think (B).", "B", 1.0, "GPQA flexible-extract; MMMU '(B)' (issue 19)"),
    Case("paren-with-text", "(C) 36", "C", 1.0, "MMMU bracketed; GPQA flexible-extract"),
    Case("letter-paren-text", "C) 36", "C", 1.0, "VLMEK (one letter token once ')' is a space)"),
    Case("letter-dot-text", "C. 36", "C", 1.0, "VLMEK (one letter token once '.' is a space)"),
    Case("letter-dot-text-explained", "C. 36\nBecause 6 x 6 = 36.", "C", 1.0, "VLMEK (one letter token)"),
    Case(
        "restated-option-list",
        "A. 12\nB. 24\nC. 36\nD. 48\nLet me think about which one fits.",
        "A",
        0.0,
        "VLMEK (four letter tokens -> cannot infer): listing the options commits to none",
    ),
    Case("lone-letter", "B", "B", 1.0, "MMMU ' B '; VLMEK"),
    Case("lone-letter-period", "B.", "B", 1.0, "MMMU strips '.' then ' B '"),
    Case(
        "lone-letter-line",
        "The mass cancels out, leaving only g.\n\nB",
        "B",
        1.0,
        "MMMU ' B '; MMLUPRO extract_final",
    ),
    Case("markdown-heading", "### Final Answer\n**(C)**", "C", 1.0, "GPQA flexible-extract; MMMU '(C)'"),
    Case("option-d", "Option D", "D", 1.0, "VLMEK (one letter token); MMLUPRO extract_final"),
    Case(
        "therefore-letter",
        "Answer: Let's think step by step. Therefore, B.",
        "B",
        1.0,
        "OC-TEST (the 'L' of \"Let's\" is no choice)",
    ),
    Case(
        "ends-on-letter",
        "Comparing the spectra, the compound must be B",
        "B",
        1.0,
        "OC (a letter after a space, colon or comma ending the text)",
    ),
    Case("letter-is-correct", "B is correct.", "B", 1.0, "VLMEK (one letter token)"),
    Case("option-is-correct", "Option B is correct.", "B", 1.0, "VLMEK (one letter token)"),
    Case("letter-is-incorrect", "B is incorrect.", "B", 1.0, "MMMU ' B '; VLMEK (one letter token)"),
    # --- several letters while reasoning, one commitment at the end ---
    Case(
        "last-explicit-wins",
        "The answer is B. Wait, the units are off; redoing it, the answer is C.",
        "C",
        1.0,
        "MMMU rfind / GPQA group_select -1 take the last; OC and TIGER the first (B): the last commits",
    ),
    Case(
        "last-explicit-wins-not-first",
        "The answer is B. Wait, the units are off; redoing it, the answer is C.",
        "B",
        0.0,
        "as above, from the other side",
    ),
    Case(
        "named-then-answer",
        "(A) is too small and (B) ignores friction. Answer: D",
        "D",
        1.0,
        "SE, OC 'ANSWER\\s*:'; MMMU would take bracketed (B): an explicit answer outranks a named letter",
    ),
    Case(
        "named-then-answer-not-named",
        "(A) is too small and (B) ignores friction. Answer: D",
        "B",
        0.0,
        "as above, from the other side",
    ),
    Case(
        "answer-then-named",
        "The answer is C, since (B) is incorrect.",
        "C",
        1.0,
        "OC, MMLUPRO, TIGER; MMMU and GPQA flexible-extract would take (B), the letter rejected",
    ),
    Case("old-test-i-think-a", "I think A. Answer: D", "D", 1.0, "SE 'Answer:'; OC"),
    Case(
        "boxed-last-wins",
        "\\boxed{A} is tempting, but recomputing gives \\boxed{B}",
        "B",
        1.0,
        "GPQA/MMMU take the last; a model's last box is its final answer",
    ),
    Case(
        "roman-numerals-then-answer",
        "(i) holds and (ii) fails, so the answer is (C).",
        "C",
        1.0,
        "MMLUPRO; MMMU (case-sensitive letters)",
    ),
    Case(
        "think-block-ignored",
        "<think>Maybe the answer is A. No: the field reverses.</think>\n(C)",
        "C",
        1.0,
        "OC-THINK then GPQA flexible-extract",
    ),
    Case(
        "think-unclosed-no-answer",
        "<think>The answer is A, but let me double-check the sign of",
        "A",
        0.0,
        "OC-THINK: an unclosed <think> drops the rest, a truncated rollout answered nothing",
    ),
    # --- articles, pronouns, words: not choices ---
    Case("article-a", "the answer is a number", "A", 0.0, "MMLUPRO (case-sensitive [A-J]); OC; old test"),
    Case(
        "article-capital-a",
        "A number of factors matter here, so it depends on context.",
        "A",
        0.0,
        "VLMEK ('A might be a quantifier'); no commitment",
    ),
    Case(
        "pronoun-i",
        "I think so.",
        "I",
        0.0,
        "SE/OC find no answer; TIGER extract_final would read the pronoun as option I",
    ),
    Case("answer-is-i-ten-options", "Answer: I", "I", 1.0, "MMLUPRO [A-J]; SE"),
    Case(
        "pronoun-then-answer",
        "I believe I made an error earlier; the answer is J.",
        "J",
        1.0,
        "MMLUPRO 'answer is \\(?X\\)?'",
    ),
    Case(
        "answer-key-then-word",
        "Answer: Because the force doubles, the period halves.",
        "B",
        0.0,
        "OC-TEST reads no option in \"Answer: Let's\"; SE's case-insensitive [A-D] takes the B of 'Because'",
    ),
    Case(
        "lowercase-paren",
        "The answer is (b).",
        "B",
        0.0,
        "MMLUPRO regex and MMMU are case-sensitive; GPQA ignores case",
    ),
    Case("no-letter", "The period halves when the length quarters.", "A", 0.0, "SE: no match -> 0"),
    Case("no-idea", "no idea", "B", 0.0, "SE: no match -> 0 (MMMU and TIGER guess at random)"),
    Case("empty", "", "A", 0.0, "SE: no match -> 0"),
    # --- hedges: two letters, no single commitment ---
    Case(
        "hedge-or-first", "The answer is A or B.", "A", 0.0, "VLMEK (two letters -> cannot infer); OC takes A"
    ),
    Case("hedge-or-last", "The answer is A or B.", "B", 0.0, "VLMEK; MMMU takes the last (B)"),
    Case(
        "hedge-paren-and",
        "Both (B) and (D) are consistent with the data.",
        "D",
        0.0,
        "VLMEK; GPQA flexible-extract would take the last (D)",
    ),
    # --- gold forms ---
    Case("gold-paren", "Answer: B", "(B)", 1.0, "GPQA golds are '(B)', exact_match ignores punctuation"),
    Case("gold-dot", "Answer: B", "B.", 1.0, "GPQA exact_match ignore_punctuation"),
    Case("gold-lowercase", "Answer: B", "b", 1.0, "GPQA exact_match ignore_case"),
    Case("gold-spaces", "(B)", " B ", 1.0, "GPQA exact_match"),
    Case("gold-other-letter", "Answer: B", "(C)", 0.0, "GPQA exact_match"),
    Case("gold-not-a-letter", "Answer: B", "Jupiter", 0.0, "GPQA exact_match ('B' != 'Jupiter')"),
    Case(
        "option-text-only",
        "Jupiter is the largest planet in our solar system.",
        "B",
        1.0,
        "MMMU index2ans (options A. Mars, B. Jupiter): a response over 5 words naming one option's text",
    ),
]

# Case id -> (our score, why we differ from the reference on purpose).
DELIBERATE: dict[str, tuple[float, str]] = {
    "letter-is-incorrect": (
        0.0,
        "both references take any lone letter token; a letter the response rejects is not its answer, "
        "and rewarding it would pay a policy for naming letters",
    ),
    "option-text-only": (
        0.0,
        "multiple_choice(response, gold) is not given the option texts; matching them needs the options "
        "in the sample (a signature change), and naming an option's text is not committing to a letter",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_multiple_choice_agrees_with_the_references(case: Case) -> None:
    expected = DELIBERATE[case.id][0] if case.id in DELIBERATE else case.score
    assert rules.multiple_choice(case.response, case.gold) == expected, case.source


def test_the_table_is_honest() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert set(DELIBERATE) <= set(ids)
    # A deliberate entry must actually differ from the reference, else it belongs in CASES.
    assert all(DELIBERATE[c.id][0] != c.score for c in CASES if c.id in DELIBERATE)
