"""Model verifiers: the CompassVerifier and POLAR clients against their references, case by case. The
models themselves are the edge: a loopback stand-in answers the way the real servers document.

References (read in their repositories, not copied):
- CV-PROMPT: open-compass/CompassVerifier src/prompts.py @ c5d6700 (`CV_PROMPT`, `CV_COT_PROMPT`).
- CV-README: open-compass/CompassVerifier README.md "How to use": `process_judgment` (the last
             `boxed{([A-C])}`; else the whole text if it is exactly A, B or C; else, after the last
             "Final Judgment:", the last `\\(([A-C])`, else the last capital A-C anywhere; else "" — no
             verdict); its printed outputs (plain "A"/"B"/"C"; the CoT analyses ending
             "Final Judgment: \\boxed{X} - LABEL"); "treat both B and C as incorrect"; served by vLLM's
             OpenAI-compatible chat API, greedy (temperature 0).
- POLAR-CLIENT: InternLM/POLAR README "Inference" and `RewardModelClient` in src/polar/reward_func.py
             (as published in RowitZou/POLAR_RFT, the authors' copy): `_encode` (sft wrapper:
             prompt\\nreference<|reward|>prompt\\noutput[UNUSED_TOKEN_130], message lists joined by
             "\\n"), `sglang_request_reward` (POST /classify {"model","text"} -> [e["embedding"][0]]),
             `vllm_request_reward` (POST /pooling {"input"} -> [e["data"][-1][0] for e in reply["data"]]),
             `lmdeploy_request_reward` (POST /pooling {"input"} -> [e["data"] for e in reply["data"]]);
             any exception -> retried, then None (a failure); `compute_score_batch` drops the output's
             <think> section (`extract_thinking_content`).
- LMDEPLOY:  InternLM/lmdeploy serve/openai/api_server.py `pooling`: {"data": [{"index", "object":
             "pooling", "data": score}], "usage"}. VLLM: the Pooling API (`--task=reward`: ALL pooling,
             one score row per token). SGLANG: http_server.py `classify_request` (errors: 400
             {"error": {"message"}}).

A case we answer differently on purpose is in DELIBERATE (our value and the reason); the test asserts
our value there, and that it does differ from the reference's."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import pytest

from vlmop.workloads.rl.rewards import verifiers
from vlmop.workloads.rl.rewards.verifiers import VerifierError

# ---------------------------------------------------------------- CompassVerifier: the prompt


def test_the_prompts_are_the_references_character_for_character() -> None:
    # sha256 of CV_PROMPT / CV_COT_PROMPT as Python evaluates them in CV-PROMPT's src/prompts.py.
    assert hashlib.sha256(verifiers.CV_PROMPT.encode()).hexdigest() == (
        "aee9c27520639ca543f0b5077164dc32c1976be0f16c87bee7055f3b7ba45e72"
    )
    assert hashlib.sha256(verifiers.CV_COT_PROMPT.encode()).hexdigest() == (
        "3d7456fb730b7517ca1f3bc1a28a3cc8847522ea6cc721a4d709f28bd07b4a10"
    )


def test_the_rendered_prompt_places_question_gold_and_response_as_the_reference_does() -> None:
    question, gold, response = "Harold tosses a nickel four times...", "\\frac{11}{16}", "\\boxed{0.6875}"
    plain = verifiers.compass_prompt(question, gold, response)
    assert plain.startswith("\nPlease as a grading expert, judge whether the final answers given by")
    assert "5. If the prediction is given with \\boxed{}, please ignore the \\boxed{}" in plain
    assert "A: CORRECT \nB: INCORRECT\nC: INVALID\nJust return the letters" in plain
    assert plain.endswith(
        f"<Original Question Begin>:\n{question}\n<Original Question End>\n"
        f"<Standard Answer Begin>:\n{gold}\n<Standard Answer End>\n"
        f"<Candidate's Answer Begin>: \n{response}\n<Candidate's Answer End>\n"
        "Judging the correctness of the candidate's answer:\n"
    )
    cot = verifiers.compass_prompt(question, gold, response, cot=True)
    assert cot.startswith("As a grading expert, your task is to determine whether the candidate's")
    assert "Final Judgment: \\boxed{A/B/C} - <CORRECT/INCORRECT/INCOMPLETE/REPETITIVE/REFUSAL>" in cot
    assert cot.endswith(
        f"<Candidate's Answer Begin>\n{response}\n<Candidate's Answer End>\n\n"
        "Analysis step by step and Final Judgment:\n"
    )
    # braces in the inputs are text, never format fields
    assert "{x}" in verifiers.compass_prompt("{x}", "{0}", "}{")


# ---------------------------------------------------------------- CompassVerifier: the verdict


class Judgement(NamedTuple):
    id: str
    text: str  # the judge model's reply
    reference: str  # what CV-README's process_judgment returns ("" = no verdict)
    source: str


COT_A = """Analysis step by step:

1. **Validity Check**:
   - The candidate's answer is complete, not repetitive, and not a refusal.

2. **Comparison of Answers**:
   - The candidate's final answer is \\(\\boxed{0.6875}\\).
   - The standard answer is \\(\\frac{11}{16}\\), which is numerically equivalent to 0.6875.

Final Judgment: \\boxed{A} - CORRECT"""
COT_B = """Analysis step by step:

1. **Validity Check**:
   - The candidate's answer is complete, not repetitive, and not a refusal.

2. **Comparison of Answers**:
   - The candidate's final answer is \\(x^4 - 4x^3 + 14x^2 - 4x + 13\\), the original polynomial.
   - This does not match the standard answer \\((x^2 + 1)(x^2 - 4x + 13)\\).

Final Judgment: \\boxed{B} - INCORRECT"""
COT_C = """Analysis step by step: [
1. First, check if the candidate's answer is INCOMPLETE, REPETITIVE, or a REFUSAL. The candidate's \
answer is cut off mid-sentence at step 15. Therefore, it is INCOMPLETE.
2. Since the answer is INCOMPLETE, we do not proceed to compare it with the standard answer.
]

Final Judgment: \\boxed{C} - INCOMPLETE"""

JUDGEMENTS = [
    # --- the README's own outputs ---
    Judgement("readme-plain-a", "A", "A", "CV-README outputs (CV_PROMPT)"),
    Judgement("readme-plain-b", "B", "B", "CV-README outputs"),
    Judgement("readme-plain-c", "C", "C", "CV-README outputs"),
    Judgement("readme-cot-a", COT_A, "A", "CV-README CoT output; \\boxed{0.6875} is no verdict"),
    Judgement("readme-cot-b", COT_B, "B", "CV-README CoT output"),
    Judgement("readme-cot-c", COT_C, "C", "CV-README CoT output (truncated candidate)"),
    # --- the \boxed{} verdict ---
    Judgement("boxed-in-sentence", "The final judgment is \\boxed{A}.", "A", "CV-README boxed first"),
    Judgement("boxed-spaces", "\\boxed{ B }", "B", "CV-README: no boxed match, the last capital B"),
    Judgement(
        "last-boxed-wins",
        "Final Judgment: \\boxed{A} - CORRECT\n\n(Had the values differed it would be \\boxed{B}.)",
        "B",
        "CV-README boxed_matches[-1]",
    ),
    Judgement(
        "boxed-in-reasoning-then-final",
        "Had the candidate said 12 this would be \\boxed{B}; it says 11/16.\nFinal Judgment: \\boxed{A}",
        "A",
        "CV-README boxed_matches[-1]",
    ),
    Judgement("bold-final", "**Final Judgment:** \\boxed{A} - CORRECT", "A", "CV-README boxed first"),
    Judgement("template-echo", "Final Judgment: \\boxed{A/B/C}", "C", "CV-README: the last capital"),
    Judgement("boxed-d", "The answer is \\boxed{D}.", "", "CV-README: only A-C; no capital A-C"),
    # --- plain letters ---
    Judgement("letter-newline", "A\n", "A", "CV-README: not exactly 'A', the last capital A"),
    Judgement("letter-leading-space", " B", "B", "CV-README: the last capital"),
    Judgement("final-letter", "0.5 and 1/2 are the same value.\nFinal Judgment: A", "A", "CV-README"),
    Judgement("final-newline-letter", "Final Judgment:\nB", "B", "CV-README"),
    Judgement("final-paren-letter", "Final Judgment: (B)", "B", "CV-README \\(([A-C])"),
    Judgement("final-lowercase-key", "Final judgment: A", "A", "CV-README: the last capital"),
    Judgement("answer-colon-b", "Answer: B", "B", "CV-README: last capital (B after Answer's A)"),
    Judgement("answer-colon-a", "Answer: A", "A", "CV-README: the last capital"),
    Judgement("letter-then-reason", "B. The candidate's answer does not match.", "B", "CV-README"),
    # --- no verdict (VerifierError: the mixture's failure value) ---
    Judgement("lowercase-letter", "a", "", "CV-README: capitals only"),
    Judgement("lowercase-boxed", "\\boxed{b}", "", "CV-README: boxed{([A-C])} is case-sensitive"),
    Judgement("lowercase-final", "final judgment: c", "", "CV-README"),
    Judgement("empty", "", "", "CV-README"),
    Judgement("judge-refuses", "I'm sorry, I can't grade this response.", "", "CV-README: no A-C"),
    # --- thinking sections (Qwen3-based CompassVerifiers emit an empty one when not thinking) ---
    Judgement("empty-think-letter", "<think>\n\n</think>\n\nA", "A", "CV-README: the last capital"),
    Judgement(
        "empty-think-cot", "<think>\n\n</think>\n\nFinal Judgment: \\boxed{B} - INCORRECT", "B", "CV-README"
    ),
    # --- where the reference's fallback reads letters out of words (see DELIBERATE) ---
    Judgement("letter-then-word", "A. Both answers are equal.", "B", "CV-README: B of 'Both'"),
    Judgement("final-letter-label", "Final Judgment: A - CORRECT", "C", "CV-README: C of 'CORRECT'"),
    Judgement(
        "final-letter-paren-label", "Final Judgment: A (CORRECT)", "C", "CV-README: '(C' of '(CORRECT'"
    ),
    Judgement("label-correct", "CORRECT", "C", "CV_PROMPT asks for CORRECT/INCORRECT/INVALID; README: C"),
    Judgement("label-incorrect", "INCORRECT", "C", "CV-README: the last C of INCORRECT"),
    Judgement("label-invalid", "INVALID", "A", "CV-README: the A of INVALID"),
    Judgement(
        "free-text-correct",
        "Comparing 0.6875 with 11/16, they are equal, so the candidate is CORRECT.",
        "C",
        "CV-README: the last capital, C of CORRECT",
    ),
    Judgement(
        "quoted-candidate-box",
        "The candidate's final answer is \\boxed{A} (option A); the standard answer is option C.\n"
        "Final Judgment: B - INCORRECT",
        "A",
        "CV-README: the candidate's quoted \\boxed{A} comes first",
    ),
    Judgement(
        "think-second-thoughts",
        "<think>At first glance \\boxed{A}, but 0.69 is a rounding of 11/16, not 11/16.</think>\nB",
        "A",
        "CV-README: boxed inside <think> counts",
    ),
    Judgement(
        "think-cut-off", "<think>\nThe candidate's 0.6875 equals 11/16, so this is A", "A", "CV-README"
    ),
]

# case id -> (our verdict, "" for none, and why we differ)
COMPASS_DELIBERATE = {
    "letter-then-word": ("A", "a verdict letter stands alone; 'Both' is a word, not option B"),
    "final-letter-label": ("A", "'A - CORRECT' is A; the reference reads the C of CORRECT (a lost reward)"),
    "final-letter-paren-label": ("A", "'(CORRECT)' is a label, not the letter C"),
    "label-correct": ("A", "CV_PROMPT itself asks for CORRECT/INCORRECT/INVALID: CORRECT is A"),
    "label-incorrect": ("B", "INCORRECT is B (the score, 0, is the same)"),
    "label-invalid": ("C", "INVALID is C; the reference reads the A of INVALID and rewards it"),
    "free-text-correct": ("A", "the label CORRECT, not the C of 'Comparing'/'CORRECT'"),
    "quoted-candidate-box": ("B", "after 'Final Judgment:' only the judge's own verdict counts"),
    "think-second-thoughts": ("B", "a closed <think> is the judge's scratch work, not its verdict"),
    "think-cut-off": ("", "a judgement cut off inside <think> has no verdict yet"),
}


def our_verdict(text: str) -> str:
    try:
        return verifiers.compass_verdict(text)
    except VerifierError:
        return ""


@pytest.mark.parametrize("case", JUDGEMENTS, ids=[c.id for c in JUDGEMENTS])
def test_compass_verdicts_agree_with_the_reference(case: Judgement) -> None:
    if case.id in COMPASS_DELIBERATE:
        ours, _why = COMPASS_DELIBERATE[case.id]
        assert ours != case.reference
        assert our_verdict(case.text) == ours
    else:
        assert our_verdict(case.text) == case.reference


def test_the_compass_table_is_large_and_honest() -> None:
    assert len(JUDGEMENTS) >= 30 and len({c.id for c in JUDGEMENTS}) == len(JUDGEMENTS)
    assert set(COMPASS_DELIBERATE) <= {c.id for c in JUDGEMENTS}


# ---------------------------------------------------------------- loopback stand-ins


class StandIn(ThreadingHTTPServer):
    """Answers every POST with the scripted (status, body) and records (path, JSON body) requests."""

    reply: tuple[int, str] = (200, "{}")
    requests: list[tuple[str, Any]]


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def do_POST(self) -> None:
        self.server.requests.append(
            (self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        )
        status, body = self.server.reply
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StandIn]:
    server = StandIn(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def server(stand_in: StandIn) -> StandIn:
    stand_in.requests = []
    return stand_in


def url(server: StandIn, path: str = "") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def chat(content: str | None, **message: Any) -> tuple[int, str]:
    """A chat completion as vLLM's OpenAI-compatible server returns it."""
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": content, **message},
        "finish_reason": "stop",
    }
    return 200, json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice]})


# ---------------------------------------------------------------- CompassVerifier end to end


def test_compass_end_to_end_a_boxed_answer_in_the_question_or_response_never_counts(server: StandIn) -> None:
    question = "Which is right? (A) 1 (B) 2. Put the letter in \\boxed{}, e.g. \\boxed{A}."
    server.reply = chat("B")
    assert verifiers.compass_verifier(url(server), question, "B", "\\boxed{A}", model="cv-3b") == 0.0
    ((path, body),) = server.requests
    assert path == "/v1/chat/completions"
    assert body["model"] == "cv-3b" and body["temperature"] == 0.0 and "max_tokens" not in body
    assert body["messages"] == [
        {"role": "user", "content": verifiers.CV_PROMPT.format(question=question, gold_answer="B",
                                                               llm_response="\\boxed{A}")}
    ]  # fmt: skip


def test_compass_end_to_end_cot_judgement(server: StandIn) -> None:
    server.reply = chat(COT_A)
    assert verifiers.compass_verifier(url(server) + "/", "q", "\\frac{11}{16}", "0.6875", cot=True) == 1.0
    assert server.requests[0][1]["messages"][0]["content"].startswith("As a grading expert, your task")
    server.reply = chat(COT_C)
    assert verifiers.compass_verifier(url(server), "q", "C", "cut off mid-", cot=True) == 0.0


def test_compass_end_to_end_reads_the_content_not_the_reasoning(server: StandIn) -> None:
    # vLLM with a reasoning parser puts the thinking in reasoning_content and the answer in content
    server.reply = chat("A", reasoning_content="Hmm, could be \\boxed{B}... no, they are equal.")
    assert verifiers.compass_verifier(url(server), "q", "2", "2") == 1.0
    server.reply = chat(None, reasoning_content="Still thinking: A or B")  # ran out of tokens thinking
    with pytest.raises(VerifierError, match="no judgement text"):
        verifiers.compass_verifier(url(server), "q", "2", "2")


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (chat("I cannot decide."), "verdict"),
        ((200, json.dumps({"object": "list", "data": []})), "not a chat completion"),
        ((400, json.dumps({"object": "error", "message": "maximum context length is 2048"})), "HTTP 400"),
        ((503, "Service Unavailable"), "HTTP 503"),
        ((200, "<html>proxy</html>"), "not JSON"),
    ],
    ids=["no-verdict", "not-chat", "http-400", "http-503", "not-json"],
)
def test_compass_end_to_end_failures_are_verifier_errors(
    server: StandIn, reply: tuple[int, str], error: str
) -> None:
    server.reply = reply
    with pytest.raises(VerifierError, match=error):
        verifiers.compass_verifier(url(server), "q", "2", "2")


# ---------------------------------------------------------------- POLAR: the input text

README_PROMPT, README_REFERENCE = "What is the capital of China?", "Beijing."


@pytest.mark.parametrize(
    ("prompt", "reference", "output", "text"),
    [
        (  # POLAR README "Data format", as plain strings
            README_PROMPT, README_REFERENCE, "Shanghai.",
            "What is the capital of China?\nBeijing.<|reward|>What is the capital of China?\nShanghai."
            "[UNUSED_TOKEN_130]",
        ),
        (  # the README's message-list form: contents joined by "\n"
            [{"role": "user", "content": README_PROMPT}], [{"role": "assistant", "content": "Beijing."}],
            [{"role": "assistant", "content": "Beijing."}],
            "What is the capital of China?\nBeijing.<|reward|>What is the capital of China?\nBeijing."
            "[UNUSED_TOKEN_130]",
        ),
        (  # a multi-turn prompt
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "2+2?"}], "4", "5",
            "Hi\nHello!\n2+2?\n4<|reward|>Hi\nHello!\n2+2?\n5[UNUSED_TOKEN_130]",
        ),
        (  # compute_score_batch: the candidate's thinking is dropped, the rest stripped
            "2+2?", "4", "<think>\n2+2 is 4.\n</think>\n\n The answer is 4. ",
            "2+2?\n4<|reward|>2+2?\nThe answer is 4.[UNUSED_TOKEN_130]",
        ),
        (  # no closed <think>: the output is kept as it is
            "2+2?", "4", "</think> 4 ", "2+2?\n4<|reward|>2+2?\n</think> 4 [UNUSED_TOKEN_130]",
        ),
        (  # an empty reference still gets its "\n" (`len(r1) == ""` in _encode is never true)
            "Say hi.", "", "hi", "Say hi.\n<|reward|>Say hi.\nhi[UNUSED_TOKEN_130]",
        ),
    ],
    ids=["readme-strings", "readme-messages", "multi-turn", "thinking-dropped", "no-closed-think",
         "empty-reference"],
)  # fmt: skip
def test_polar_input_is_the_clients_sft_encoding(prompt: Any, reference: Any, output: Any, text: str) -> None:
    assert verifiers.polar_text(prompt, reference, output) == text


# ---------------------------------------------------------------- POLAR: the serving protocols

FAIL = "FAIL"  # the reference client raises inside its retry loop and finally returns None


class Exchange(NamedTuple):
    id: str
    path: str  # the endpoint's path: /classify (sglang), /pooling or "" (vLLM, lmdeploy), other (vlmop)
    n: int  # texts sent in one request
    status: int
    body: str  # the server's reply, verbatim JSON (NaN and Infinity included, as Python's json writes)
    reference: Any  # what the reference client returns: the rewards, or FAIL
    source: str


def sglang(*scores: Any) -> str:
    return json.dumps([{"embedding": [s], "meta_info": {"id": f"r{i}", "prompt_tokens": 20}}
                       for i, s in enumerate(scores)])  # fmt: skip


def vllm(*rows: Any) -> str:
    return json.dumps({"id": "pool-1", "object": "list", "model": "internlm/POLAR-7B",
                       "data": [{"index": i, "object": "pooling", "data": r} for i, r in enumerate(rows)],
                       "usage": {"prompt_tokens": 40, "total_tokens": 40}})  # fmt: skip


lmdeploy = vllm  # the same envelope; lmdeploy's "data" is the score itself

NAN = math.nan
EXCHANGES = [
    # --- sglang /classify ---
    Exchange("sglang-one", "/classify", 1, 200, sglang(-0.5703), [-0.5703], "POLAR-CLIENT; README value"),
    Exchange("sglang-batch", "/classify", 2, 200, sglang(-0.5703, -11.0304), [-0.5703, -11.0304], "README"),
    Exchange("sglang-int", "/classify", 1, 200, sglang(3), [3], "e['embedding'][0]"),
    Exchange("sglang-extra-values", "/classify", 1, 200,
             json.dumps([{"embedding": [1.5, 0.2]}]), [1.5], "the first value is the reward"),
    Exchange("sglang-no-embedding", "/classify", 1, 200, json.dumps([{"meta_info": {}}]), FAIL, "KeyError"),
    Exchange("sglang-empty-embedding", "/classify", 1, 200, json.dumps([{"embedding": []}]), FAIL, "[0]"),
    Exchange("sglang-dict-reply", "/classify", 1, 200, json.dumps({"embedding": [0.5]}), FAIL,
             "iterating a dict gives its keys: TypeError"),
    Exchange("sglang-400", "/classify", 1, 400, json.dumps({"error": {"message": "too long"}}), FAIL,
             "SGLANG error reply: TypeError on the dict"),
    Exchange("sglang-500-text", "/classify", 1, 500, "Internal Server Error", FAIL, "res.json() raises"),
    Exchange("sglang-nan", "/classify", 1, 200, sglang(NAN), [NAN], "passed on as it is"),
    Exchange("sglang-inf", "/classify", 1, 200, sglang(math.inf), [math.inf], "passed on as it is"),
    Exchange("sglang-string", "/classify", 1, 200, sglang("0.5"), ["0.5"], "passed on as it is"),
    Exchange("sglang-bool", "/classify", 1, 200, sglang(True), [True], "passed on as it is"),
    Exchange("sglang-short-batch", "/classify", 2, 200, sglang(0.5), [0.5], "no count check"),
    # --- vLLM /pooling (per-token rows; the last token's first value) ---
    Exchange("vllm-one", "/pooling", 1, 200, vllm([[0.1], [0.3], [-0.5703]]), [-0.5703], "e['data'][-1][0]"),
    Exchange("vllm-root-url", "", 1, 200, vllm([[0.2], [1.25]]), [1.25], "a pool's Service URL -> /pooling"),
    Exchange("vllm-batch", "/pooling", 2, 200, vllm([[0.0], [2.5]], [[0.0], [-1.0]]), [2.5, -1.0], "VLLM"),
    Exchange("vllm-two-labels", "/pooling", 1, 200, vllm([[0.1, 9.0]]), [0.1], "[-1][0]"),
    Exchange("vllm-flat-row", "/pooling", 1, 200, vllm([0.1, 0.2]), FAIL, "0.2[0]: TypeError"),
    Exchange("vllm-empty-rows", "/pooling", 1, 200, vllm([]), FAIL, "IndexError"),
    Exchange("vllm-400", "/pooling", 1, 400,
             json.dumps({"object": "error", "message": "This model's maximum context length is 32768",
                         "type": "BadRequestError", "code": 400}), FAIL, "KeyError: no data"),
    Exchange("vllm-404", "/pooling", 1, 404, json.dumps({"detail": "Not Found"}), FAIL, "no /pooling"),
    Exchange("vllm-nan", "/pooling", 1, 200, vllm([[0.1], [NAN]]), [NAN], "passed on as it is"),
    Exchange("vllm-no-data", "/pooling", 1, 200, json.dumps({"object": "list"}), FAIL, "KeyError"),
    Exchange("vllm-not-json", "/pooling", 1, 200, "<html>gateway</html>", FAIL, "res.json() raises"),
    # --- lmdeploy /pooling (one number per text) ---
    Exchange("lmdeploy-one", "/pooling", 1, 200, lmdeploy(-0.5703), [-0.5703], "LMDEPLOY"),
    Exchange("lmdeploy-batch", "/pooling", 2, 200, lmdeploy(-0.57, -11.03), [-0.57, -11.03], "README"),
    Exchange("lmdeploy-negative-inf", "/pooling", 1, 200, lmdeploy(-math.inf), [-math.inf], "passed on"),
    Exchange("lmdeploy-string", "/pooling", 1, 200, lmdeploy("high"), ["high"], "passed on as it is"),
    Exchange("lmdeploy-null", "/pooling", 1, 200, lmdeploy(None), [None], "passed on as it is"),
    Exchange("lmdeploy-no-data-field", "/pooling", 1, 200,
             json.dumps({"data": [{"index": 0, "object": "pooling"}]}), FAIL, "KeyError"),
    Exchange("lmdeploy-empty", "/pooling", 1, 200, lmdeploy(), [], "no count check"),
    Exchange("lmdeploy-too-many", "/pooling", 1, 200, lmdeploy(0.5, 0.7), [0.5, 0.7], "no count check"),
    # --- vlmop's own scorer protocol (any other path) ---
    Exchange("scorer-ok", "/score", 1, 200, json.dumps({"score": 0.75}), [0.75], "vlmop protocol"),
    Exchange("scorer-missing", "/score", 1, 200, json.dumps({"reward": 0.75}), FAIL, "vlmop protocol"),
]  # fmt: skip

# case id -> (our answer, why we differ)
POLAR_DELIBERATE = {
    "sglang-nan": (FAIL, "a NaN reward would poison its whole group's normalisation"),
    "sglang-inf": (FAIL, "an infinite reward would dominate its group's normalisation"),
    "vllm-nan": (FAIL, "a NaN reward would poison its whole group's normalisation"),
    "lmdeploy-negative-inf": (FAIL, "an infinite reward would dominate its group's normalisation"),
    "sglang-string": (FAIL, "a reward is a number; a string is out of protocol"),
    "lmdeploy-string": (FAIL, "a reward is a number; a string is out of protocol"),
    "sglang-bool": (FAIL, "a reward is a number; true is out of protocol"),
    "lmdeploy-null": (FAIL, "null is no reward"),
    "sglang-short-batch": (FAIL, "fewer rewards than texts would pair rewards with the wrong samples"),
    "lmdeploy-empty": (FAIL, "no reward for the text sent"),
    "lmdeploy-too-many": (FAIL, "more rewards than texts: which one is ours is unknown"),
}


def canon(answer: Any) -> str:
    """Comparable text: NaN equals NaN, an int reward equals its float, True stays apart from 1."""
    if answer == FAIL:
        return FAIL
    return repr([float(v) if type(v) in (int, float) else v for v in answer])


def polar_answer(server: StandIn, case: Exchange) -> Any:
    endpoint = url(server, case.path)
    samples = [(f"prompt {i}", f"reference {i}", f"output {i}") for i in range(case.n)]
    try:
        if case.n == 1:
            return [verifiers.polar(endpoint, *samples[0], timeout=5.0)]
        return verifiers.polar_batch(endpoint, samples, timeout=5.0)
    except VerifierError:
        return FAIL


def check_request(server: StandIn, case: Exchange) -> None:
    ((path, body),) = server.requests
    texts = [verifiers.polar_text(f"prompt {i}", f"reference {i}", f"output {i}") for i in range(case.n)]
    if case.path == "/classify":
        assert (path, body) == ("/classify", {"text": texts})
    elif case.path in ("", "/pooling"):
        assert (path, body) == ("/pooling", {"input": texts})
    else:
        assert (path, body) == (
            case.path,
            {"prompt": "prompt 0", "reference": "reference 0", "output": "output 0"},
        )


@pytest.mark.parametrize("case", EXCHANGES, ids=[c.id for c in EXCHANGES])
def test_polar_protocols_agree_with_the_reference_client(server: StandIn, case: Exchange) -> None:
    server.reply = (case.status, case.body)
    ours = polar_answer(server, case)
    check_request(server, case)
    if case.id in POLAR_DELIBERATE:
        expected, _why = POLAR_DELIBERATE[case.id]
        assert repr(expected) != repr(case.reference)
    else:
        expected = case.reference
    assert canon(ours) == canon(expected)
    if ours != FAIL:
        assert all(type(score) is float for score in ours)


def test_the_polar_table_is_large_and_honest() -> None:
    assert len(EXCHANGES) >= 30 and len({c.id for c in EXCHANGES}) == len(EXCHANGES)
    assert set(POLAR_DELIBERATE) <= {c.id for c in EXCHANGES}


def test_polar_refuses_a_non_http_endpoint_and_an_unreachable_one_fails() -> None:
    with pytest.raises(VerifierError, match="not http"):
        verifiers.polar("file:///etc/passwd", "q", "ref", "x")
    with pytest.raises(OSError, match="refused"):  # nothing listens there: the mixture's failure value
        verifiers.polar("http://127.0.0.1:9/pooling", "q", "ref", "x", timeout=2.0)
