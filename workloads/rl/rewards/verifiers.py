"""Clients of model verifiers served over HTTP (one verifier pool, or an endpoint you run).

CompassVerifier (open-compass/CompassVerifier) runs on an OpenAI-compatible chat endpoint (vLLM, as
its README serves it). The prompt is the reference's own `CV_PROMPT` (or `CV_COT_PROMPT`, cot=True)
from src/prompts.py, verbatim: the model was trained on it. Its judgement is read as the README's
`process_judgment` reads it, with the deliberate differences listed at `compass_verdict`; A (correct)
scores 1.0, B (incorrect) and C (invalid) score 0.0, as the README advises.

POLAR (InternLM/POLAR) is a scalar reward model served by vLLM (`--task=reward`), lmdeploy or sglang
(`--is-embedding`). The client speaks what POLAR's `RewardModelClient` (src/polar/reward_func.py)
speaks, chosen by the endpoint's path:

- `.../pooling`, or a bare `http://host:port` (a verifier pool's Service): POST {"input": [text]};
  vLLM answers {"data": [{"data": [[token score], ...]}]} (per-token rewards: the last token's is the
  reward), lmdeploy answers {"data": [{"data": score}]};
- `.../classify` (sglang): POST {"text": [text]} → [{"embedding": [score, ...]}], the reward first;
- any other path: vlmop's own scorer protocol, POST {"prompt", "reference", "output"} → {"score"},
  for a service you run that builds POLAR's input itself.

The text is the client's "sft" encoding: `prompt\nreference<|reward|>prompt\noutput[UNUSED_TOKEN_130]`,
message lists joined by newlines, and the candidate's closed <think> section dropped first (as POLAR's
verl reward function does). Not done here, deliberately: the client's token-level truncation (4096
tokens per response, it needs POLAR's tokenizer; an over-long input fails at the server instead) and
its 8 silent retries (a failure here is the mixture's failure score, within the verifier's timeout).
Scores are the model's raw scalars (the group normalisation is GSPO's).

Whatever answer breaks the protocol (HTTP errors, non-JSON, missing fields, non-numbers, NaN or
infinities, fewer or more scores than texts) raises VerifierError, which the mixture scores as the
verifier's failure value; timeouts and unreachable servers raise their own errors, scored the same."""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

# open-compass/CompassVerifier src/prompts.py, character for character (str.format fields:
# question, gold_answer, llm_response).
CV_PROMPT = (
    "\n"
    "Please as a grading expert, judge whether the final answers given by the candidates below are "
    "consistent with the standard answers, that is, whether the candidates answered correctly. \n"
    "Here are some evaluation criteria:\n"
    "1. Please refer to the given standard answer. You don't need to re-generate the answer to the "
    "question because the standard answer has been given. You only need to judge whether the "
    "candidate's answer is consistent with the standard answer according to the form of the "
    "question. THE STANDARD ANSWER IS ALWAYS CORRECT AND THE QUESTION IS PERFECTLY VALID. NEVER "
    "QUESTION THEM.\n"
    "2. ONLY compare the FINAL ANSWER - COMPLETELY IGNORE any potential errors in the REASONING "
    "PROCESSES.\n"
    "3. Some answers may be expressed in different ways, such as some answers may be a mathematical "
    "expression, some answers may be a textual description, as long as the meaning expressed is the "
    "same. Before making a judgment, please understand the question and the standard answer first, "
    "and then judge whether the candidate's answer is correct.\n"
    "4. Some answers may consist of multiple items, such as multiple-choice questions, "
    "multiple-select questions, fill-in-the-blank questions, etc. Regardless of the question type, "
    "the final answer will be considered correct as long as it matches the standard answer, "
    "regardless of whether the reasoning process is correct. For multiple-select questions and "
    "multi-blank fill-in-the-blank questions, all corresponding options or blanks must be answered "
    "correctly and match the standard answer exactly to be deemed correct.\n"
    "5. If the prediction is given with \\boxed{{}}, please ignore the \\boxed{{}} and only judge "
    "whether the candidate's answer is consistent with the standard answer.\n"
    "6. If the candidate's answer is invalid (e.g., incomplete (cut off mid-response), lots of "
    "unnormal repetitive content, or irrelevant to the question, saying it can't answer the question "
    "because some irresistible factors, like ethical issues, no enough information, etc.), select "
    "option C (INVALID).Please judge whether the following answers are consistent with the standard "
    "answer based on the above criteria. Grade the predicted answer of this new question as one of:\n"
    "A: CORRECT \n"
    "B: INCORRECT\n"
    "C: INVALID\n"
    'Just return the letters "A", "B", or "C", with no text around it.\n'
    "Here is your task. Simply reply with either CORRECT, INCORRECT, or INVALID. Don't apologize or "
    "correct yourself if there was a mistake; we are just trying to grade the answer.\n"
    "<Original Question Begin>:\n"
    "{question}\n"
    "<Original Question End>\n"
    "<Standard Answer Begin>:\n"
    "{gold_answer}\n"
    "<Standard Answer End>\n"
    "<Candidate's Answer Begin>: \n"
    "{llm_response}\n"
    "<Candidate's Answer End>\n"
    "Judging the correctness of the candidate's answer:\n"
)

CV_COT_PROMPT = (
    "As a grading expert, your task is to determine whether the candidate's final answer matches the "
    "provided standard answer. Follow these evaluation guidelines precisely:\n"
    "\n"
    "Evaluation Protocol:\n"
    "1. Reference Standard:\n"
    "   - The standard answer is definitive and always correct\n"
    "   - The question is perfectly valid - never question them\n"
    "   - Do not regenerate answers; only compare with the given standard\n"
    "\n"
    "2. Comparison Method:\n"
    "   - Carefully analyze the question's requirements and the standard answer's structure\n"
    "     * Determine whether the question expects exact matching of the entire standard answer or "
    "allows partial matching of its components.\n"
    "     * This determination must be made based on the question's phrasing and the nature of the "
    "standard answer.\n"
    "   - Compare ONLY the candidate's final answer (ignore all reasoning/explanation errors)\n"
    "   - Disregard any differences in formatting or presentation style\n"
    "   - For mathematical expressions: calculate step by step whether the two formulas are "
    "equivalent\n"
    "   - For multiple-choice questions: compare only the final choice and corresponding option "
    "content\n"
    "\n"
    "3. Multi-part Answers:\n"
    "   - For questions requiring multiple responses (e.g., multi-select):\n"
    "   - All parts must match the standard answer exactly. \n"
    "   - Compare each sub-answer step by step. Partial matches are considered incorrect.\n"
    "\n"
    "4. Validity Check:\n"
    "   - Reject answers that are:\n"
    "     * Incomplete (cut off mid-sentence in the final sentence, lacking a complete response) → "
    "Label as INCOMPLETE\n"
    "     * Repetitive (repetition of words or phrases in a loop) → Label as REPETITIVE\n"
    '     * Explicit refusals (e.g., directly return "I cannot answer/provide/access ...") → Label '
    "as REFUSAL\n"
    "   - For invalid answers, specify the type in the judgment (e.g., \\boxed{{C}} - INCOMPLETE).\n"
    "\n"
    "Grading Scale:\n"
    "\\boxed{{A}} - CORRECT: \n"
    "   - Answer matches standard exactly (including equivalent expressions)\n"
    "   - For numerical answers: consider as equivalent if values match when rounded appropriately\n"
    "   - Semantically equivalent responses\n"
    "\n"
    "\\boxed{{B}} - INCORRECT:\n"
    "   - Any deviation from standard answer\n"
    "   - Partial matches for multi-part questions\n"
    "\n"
    "\\boxed{{C}} - INCOMPLETE/REPETITIVE/REFUSAL:\n"
    "   - Fails validity criteria above (must specify: INCOMPLETE/REPETITIVE/REFUSAL)\n"
    "\n"
    "Execution Steps and Output Formats:\n"
    "\n"
    "Analysis step by step: [\n"
    "Thoroughly evaluate the candidate's answer including:\n"
    "(1) First check if the answer is INCOMPLETE (cut off mid-sentence), REPETITIVE (looping "
    "repetition), or a REFUSAL (explicit denial) - if so, immediately classify as \\boxed{{C}} with "
    "the corresponding type.\n"
    "(2) Analyze the question's core requirements and the standard answer's structure, for example:\n"
    "- Strict requirements: Identify mandatory constraints (e.g., simplification, answer order, "
    "multi-part completeness)\n"
    "- Tolerant allowances: Ignore non-critical deviations (e.g., missing option labels in MCQs, "
    "equivalent but unformatted expressions)\n"
    "- Required answer type, precision level, etc.\n"
    "(3) Perform a detailed comparison between the candidate's final answer and the standard answer, "
    "for example:\n"
    "- Content equivalence\n"
    "- Permitted variations in numerical precision\n"
    "- Allowed expression formats]\n"
    "Final Judgment: \\boxed{{A/B/C}} - <CORRECT/INCORRECT/INCOMPLETE/REPETITIVE/REFUSAL>\n"
    "\n"
    "Here is your task.\n"
    "<Original Question Begin>\n"
    "{question}\n"
    "<Original Question End>\n"
    "\n"
    "<Standard Answer Begin>\n"
    "{gold_answer}\n"
    "<Standard Answer End>\n"
    "\n"
    "<Candidate's Answer Begin>\n"
    "{llm_response}\n"
    "<Candidate's Answer End>\n"
    "\n"
    "Analysis step by step and Final Judgment:\n"
)


BOXED_VERDICT = re.compile(r"\\boxed\{\s*([ABC])\s*\}")
LETTER_VERDICT = re.compile(r"(?<![A-Za-z])([ABC])(?![A-Za-z])")
LABEL_VERDICT = re.compile(r"\b(CORRECT|INCORRECT|INVALID|INCOMPLETE|REPETITIVE|REFUSAL)\b")
LABELS = {"CORRECT": "A", "INCORRECT": "B"}  # the rest are CV_COT_PROMPT's kinds of INVALID (C)
THOUGHT = re.compile(r"<think>.*?</think>", re.DOTALL)
FINAL = "Final Judgment:"

Message = Mapping[str, Any]
Text = str | Sequence[Message]


class VerifierError(Exception):
    """The verifier answered, but not in its protocol."""


def post_json(url: str, body: Any, timeout: float) -> Any:
    if not url.startswith(("http://", "https://")):
        raise VerifierError(f"verifier endpoint {url!r} is not http(s)")
    request = urllib.request.Request(  # noqa: S310 (http(s) only, checked above)
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            data = reply.read()
    except urllib.error.HTTPError as error:
        raise VerifierError(f"HTTP {error.code} from {url}: {error.read()[:200]!r}") from error
    try:
        return json.loads(data)
    except ValueError as error:
        raise VerifierError(f"not JSON from {url}: {data[:200]!r}") from error


def compass_verdict(text: str) -> str:
    """A, B or C from a CompassVerifier judgement, read as its README's `process_judgment` reads it: the
    last \\boxed{A|B|C}, else (after the last "Final Judgment:") the last letter A, B or C; upper case
    only, nothing found is no verdict (VerifierError). Deliberately different, each a reference quirk
    that would pay a reward for the wrong verdict:
    - a letter must stand alone: the reference takes any capital A-C, so "A. Both match" is B (of
      "Both"), "Final Judgment: A - CORRECT" is C (of "CORRECT") and "INVALID" is A;
    - with no letter, the labels the prompts ask for count: CORRECT A, INCORRECT B, INVALID (and the
      CoT prompt's INCOMPLETE, REPETITIVE, REFUSAL) C;
    - after "Final Judgment:" only its own verdict counts, never a \\boxed{} quoted from the candidate
      in the analysis above it;
    - closed <think> sections are dropped (a judge's second thoughts are not its verdict), and a
      judgement still inside <think> (cut off by max tokens) has no verdict."""
    text = THOUGHT.sub("", text)
    if "<think>" in text:
        raise VerifierError(f"the judge's thinking was cut off: {text[-200:]!r}")
    if FINAL in text:
        text = text.rpartition(FINAL)[2]
    for pattern in (BOXED_VERDICT, LETTER_VERDICT):
        if found := pattern.findall(text):
            return str(found[-1])
    if labels := LABEL_VERDICT.findall(text):
        return LABELS.get(labels[-1], "C")
    raise VerifierError(f"no \\boxed{{A|B|C}}, letter or label verdict in {text[-200:]!r}")


def compass_prompt(question: str, gold: str, response: str, cot: bool = False) -> str:
    template = CV_COT_PROMPT if cot else CV_PROMPT
    return template.format(question=question, gold_answer=gold, llm_response=response)


def compass_verifier(
    endpoint: str,
    question: str,
    gold: str,
    response: str,
    model: str = "verifier",
    timeout: float = 30.0,
    *,
    cot: bool = False,
) -> float:
    """1.0 if the judge at `endpoint` (OpenAI-compatible) says A, 0.0 for B or C. Greedy, as the README
    decodes; no max_tokens, so a long prompt never overflows a short --max-model-len by our doing."""
    messages = [{"role": "user", "content": compass_prompt(question, gold, response, cot)}]
    body = {"model": model, "messages": messages, "temperature": 0.0}
    reply = post_json(endpoint.rstrip("/") + "/v1/chat/completions", body, timeout)
    try:
        text = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as error:
        raise VerifierError(f"not a chat completion: {str(reply)[:200]}") from error
    if not isinstance(text, str):  # e.g. null content: everything went to reasoning_content
        raise VerifierError(f"no judgement text in {str(reply)[:200]}")
    return 1.0 if compass_verdict(text) == "A" else 0.0


def _joined(text: Text) -> str:
    return text if isinstance(text, str) else "\n".join(str(m["content"]) for m in text)


def after_thinking(output: str) -> str:
    """What follows a closed <think> section, stripped; the whole output when there is none."""
    thought = re.search(r"<think>.*?</think>(.*)", output, re.DOTALL)
    return thought.group(1).strip() if thought else output


def polar_text(prompt: Text, reference: Text, output: Text) -> str:
    """POLAR's input: the prompt with the reference, then the prompt with the candidate."""
    p, reference_text = _joined(prompt), _joined(reference)
    return f"{p}\n{reference_text}<|reward|>{p}\n{after_thinking(_joined(output))}[UNUSED_TOKEN_130]"


def _score(value: Any, reply: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise VerifierError(f"no finite score in {str(reply)[:200]}")
    return float(value)


def polar_batch(
    endpoint: str, samples: Sequence[tuple[Text, Text, Text]], timeout: float = 30.0
) -> list[float]:
    """Rewards of (prompt, reference, output) samples from a POLAR server (/pooling or /classify)."""
    texts = [polar_text(*sample) for sample in samples]
    path = urlsplit(endpoint).path.rstrip("/")
    try:
        if path.endswith("/classify"):  # sglang
            reply = post_json(endpoint, {"text": texts}, timeout)
            scores = [_score(item["embedding"][0], reply) for item in reply]
        else:  # vLLM (per-token rewards: the last token's) or lmdeploy (one number)
            url = endpoint if path.endswith("/pooling") else endpoint.rstrip("/") + "/pooling"
            reply = post_json(url, {"input": texts}, timeout)
            values = [item["data"] for item in reply["data"]]
            scores = [_score(v[-1][0] if isinstance(v, list) else v, reply) for v in values]
    except (KeyError, IndexError, TypeError) as error:
        raise VerifierError(f"not a POLAR reward reply: {str(reply)[:200]}") from error
    if len(scores) != len(texts):
        raise VerifierError(f"{len(scores)} rewards for {len(texts)} texts: {str(reply)[:200]}")
    return scores


def polar(endpoint: str, prompt: Text, reference: Text, output: Text, timeout: float = 30.0) -> float:
    path = urlsplit(endpoint).path.rstrip("/")
    if not path or path.endswith(("/pooling", "/classify")):
        return polar_batch(endpoint, [(prompt, reference, output)], timeout)[0]
    body = {"prompt": _joined(prompt), "reference": _joined(reference), "output": _joined(output)}
    reply = post_json(endpoint, body, timeout)
    return _score(reply.get("score") if isinstance(reply, dict) else None, reply)
