"""The bad-input matrix: every input of every tab with hostile or odd values, through the real server.

Each case must either work (odd but valid input: emoji, a prompt longer than the context, top-k above the
vocabulary) or fail with a message written for people that names what was wrong; after every case the server
still answers and this learner's trained model is still there (nothing already saved is lost).

NaN cannot travel through gradio_client (its JSON encoder refuses it), so NaN cases go as raw HTTP calls
(`POST /gradio_api/call/<api>` with a literal NaN, then read the event stream), as a browser could send them.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request

import pytest

from playground.ui.tokenize_tab import SETTINGS
from playground.ui.train_tab import MY_TEXT

COURSE = next(iter(SETTINGS))  # the Tokenize tab's training settings: the course's

TOK = "bundled BPE 4096"
LEARNER_STEPS = 7  # the learner's model: a distinct step count the checks look for
MB = "a" * 1_000_000
TEXTS = {  # name -> (text, must it fail?) for text boxes that require text
    "empty": ("", True),
    "whitespace": (" \n\t  ", True),
    "1MB": (MB, True),
    "control": ("tab\there\x00nul\x07bell\x1b[31mansi\r\n\u200b\ufeff end", False),
    "emoji-cjk-rtl": ("🚀🧪 東京で 日本語 שלום עולם مرحبا \u202eevil\u202c ok", False),
}
TRACE = re.compile(r"Traceback|File \"|line \d+, in|Something went wrong|Internal error")

# ------------------------------------------------------------------------------ every endpoint's inputs
# api -> (base arguments, {index: input label}) for text boxes, numbers and model/tokenizer pickers
TRAIN = ["austen", "", None, "gpt", "tiny", 1, 2, 16, 16, 5e-3, 4, 50, 2, "steps", 1, "It is", "Emma was", 1]
ENDPOINTS = {
    "tokenize": (["Hello world", TOK, "(none)"], {"text": [0], "tokenizer": [1, 2]}),
    "train_tokenizer": (["paste text", "austen", "the cat sat on the mat. " * 40, 80, "bpe", COURSE], {"text": [2]}),
    "ce_score": (["gpt-tiny", "It is a truth universally acknowledged"], {"text": [1], "model": [0]}),
    "ce_break": (["gpt-tiny", "It is a truth", 1.0, "float32"], {"text": [1], "model": [0]}),
    "train_start": (TRAIN, {"text": [15, 16]}),
    "train_attention": (["Emma Woodhouse, handsome", 1], {"text": [0]}),
    "sample_generate": (["gpt-tiny", "Once upon", 1.0, 50, 1.0, 4, 1, 0], {"text": [1], "model": [0]}),
    "sample_step": (["gpt-tiny", "Once upon", 1.0, 50, 1.0, 0], {"text": [1], "model": [0]}),
    "compare_generate": (
        ["gpt-tiny", "llama-aligned", "Hi there", False, True, 1.0, 50, 1.0, 4, 1, 0],
        {"text": [2], "model": [0, 1]},
    ),
    "compare_prompts": ([True, "gpt-tiny", "llama-aligned", "Hi", False, True], {"text": [3], "model": [1, 2]}),
    "orpo_breakdown": (["llama-base", "Hi?", "Hello!", "Go away.", 0.5], {"text": [1, 2, 3], "model": [0]}),
    "orpo_steps": (["llama-base", "Hi?", "Hello!", "Go away.", 0.5, 1, 1e-3], {"model": [0]}),
}
# api -> {index: a word the message should contain} for every number input (sliders and number boxes)
NUMBERS = {
    "train_tokenizer": {3: "Vocabulary"},
    "ce_break": {2: "scale"},
    "train_start": {
        5: "Layers",
        6: "Heads",
        7: "Width",
        8: "Context",
        9: "Learning rate",
        10: "Batch",
        11: "Total steps",
        12: "Warmup",
        14: "Burst",
        17: "layer",
    },  # fmt: skip
    "train_attention": {1: "layer"},
    "sample_generate": {2: "Temperature", 3: "top-k", 4: "top-p", 5: "Max new", 6: "answers", 7: "Seed"},
    "sample_step": {2: "Temperature", 3: "top-k", 4: "top-p", 5: "Seed"},
    "compare_generate": {5: "Temperature", 6: "top-k", 7: "top-p", 8: "Max new", 9: "answers", 10: "Seed"},
    "orpo_breakdown": {4: "lambda"},
    "orpo_steps": {4: "lambda", 5: "steps", 6: "learning rate"},
}
# the sweep: negative and huge always fail; zero may be valid (greedy temperature, no top-k, seed 0, ...)
NUMBER_VALUES = {"negative": (-1, True), "zero": (0, None), "huge": (10**12, True)}
SOURCES = {  # model / tokenizer sources that must fail, and a word their message should contain
    "dotdot": ("../..", r"config\.json|folder|switched off"),
    "url": ("https://huggingface.co/gpt2", "Hub id"),
    "spaces": ("my org/some model", "Hub id"),
    "unknown hub id": ("nobody-here/no-such-model", "offline|not in the local"),
    "revision dotdot": ("org/name@../../x", "Hub id"),
    "absolute": ("/etc", r"config\.json|folder|switched off|tokenizer"),
}


# odd input that a tab may accept by design (None: either works, or fails with a clear message)
MAY_PASS = {
    ("train_start", 15, "empty"): "an empty sample prompt means the default one",
    ("train_start", 16, "empty"): "an empty attention prompt means the default one",
    ("train_attention", 0, "empty"): "an empty attention prompt means the default one",
    ("train_start", 17, "huge"): "the layer to label is clamped to the model's layers",
    ("train_attention", 1, "huge"): "the layer to label is clamped to the model's layers",
    ("train_tokenizer", 2, "control"): "a small vocabulary cannot hold every distinct character: said so",
    ("train_tokenizer", 2, "emoji-cjk-rtl"): "a small vocabulary cannot hold every distinct character: said so",
}
# pickers on which the whole list of sources is tried; the others share the same resolver and get two
FULL_SOURCES = {("tokenize", 1), ("ce_score", 0), ("sample_generate", 0), ("compare_generate", 0),
                ("orpo_breakdown", 0)}  # fmt: skip


def with_arg(api: str, index: int, value) -> list:
    args = list(ENDPOINTS[api][0])
    args[index] = value
    if api == "train_start" and index == 1:
        args[0] = MY_TEXT  # the pasted-text box only counts when the source says so
    return args


def cases():
    """(id, api, args, must_fail, needles) for the whole matrix."""
    out = []
    for api, (_, inputs) in ENDPOINTS.items():
        for i in inputs.get("text", []):
            for name, (text, fail) in TEXTS.items():
                fail = fail and not (api == "tokenize" and name in ("empty", "whitespace"))  # shown, not refused
                fail = None if (api, i, name) in MAY_PASS else fail
                needles = ["empty", "limit", "characters", "vocabulary"]
                out.append((f"{api}[{i}]-{name}", api, with_arg(api, i, text), fail, needles))
        for i in inputs.get("model", []) + inputs.get("tokenizer", []):
            names = list(SOURCES) if (api, i) in FULL_SOURCES else ["dotdot", "url"]
            for name in names:
                source, needle = SOURCES[name]
                out.append((f"{api}[{i}]-{name}", api, with_arg(api, i, source), True, [needle]))
    for api, labels in NUMBERS.items():
        for i, label in labels.items():
            for name, (value, fail) in NUMBER_VALUES.items():
                fail = None if (api, i, name) in MAY_PASS else fail
                out.append((f"{api}[{i}]-{name}", api, with_arg(api, i, value), fail, [label, str(value)]))
    return out


CASES = cases()


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def learner(app_url):
    """A learner with a trained model (LEARNER_STEPS steps) that no bad request may take away."""
    from gradio_client import Client

    c = Client(app_url, verbose=False)
    c.predict(*with_arg("train_start", 14, LEARNER_STEPS), api_name="/train_start")
    assert step_of(c.predict(api_name="/train_stop")) == LEARNER_STEPS
    return c


@pytest.fixture(scope="module")
def scratch(app_url):
    """Another learner for cases that may succeed in replacing a trained model (the Train tab's Start)."""
    from gradio_client import Client

    return Client(app_url, verbose=False)


def step_of(status: str) -> int:
    m = re.search(r"data-step='(\d+)'", status)
    return int(m.group(1)) if m else -1


def assert_alive(learner) -> None:
    """The server still serves (a cheap call) and the learner's model is still theirs, with its steps."""
    stats, *_ = learner.predict("still serving", TOK, "(none)", api_name="/tokenize")
    assert "tok-stats" in stats
    assert step_of(learner.predict(api_name="/train_stop")) == LEARNER_STEPS


def outcome(client, api: str, args: list) -> str | None:
    """None when the call worked, else the message the UI shows (gradio_client's AppError)."""
    from gradio_client.exceptions import AppError

    try:
        if api in STREAMED:
            job = client.submit(*args, api_name=f"/{api}")
            list(job)  # consume the stream to the end
            job.result()  # raises the AppError of a failed job
        else:
            client.predict(*args, api_name=f"/{api}")
    except AppError as exc:
        return str(exc)
    return None


STREAMED = ("sample_generate", "compare_generate", "train_start", "orpo_steps")


def check_message(msg: str, needles: list[str]) -> None:
    assert msg and not TRACE.search(msg), f"not a human message: {msg!r}"
    assert len(msg) < 1200, "a message, not a dump"
    assert any(re.search(n, msg, re.IGNORECASE) for n in needles), f"{msg!r} does not say what was wrong {needles}"


# ---------------------------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize("case_id, api, args, must_fail, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(learner, scratch, case_id, api, args, must_fail, needles):
    client = scratch if api == "train_start" else learner
    msg = outcome(client, api, args)
    if must_fail:
        assert msg is not None, f"{case_id}: accepted"
    if msg is not None:
        assert must_fail is not False, f"{case_id}: valid input refused: {msg}"
        check_message(msg, needles)
    assert_alive(learner)


# ------------------------------------------------------------------------------------ odd but valid input
def test_top_k_above_the_vocabulary_is_clamped(learner):
    assert outcome(learner, "sample_generate", with_arg("sample_generate", 3, 100_000)) is None
    assert outcome(learner, "sample_step", with_arg("sample_step", 3, 100_000)) is None
    assert_alive(learner)


def test_prompts_longer_than_the_context_are_cropped(learner):
    long = "It is a truth universally acknowledged. " * 400  # thousands of tokens, gpt-tiny's context is 256
    for api, i in (("sample_generate", 1), ("ce_score", 1), ("compare_generate", 2), ("orpo_breakdown", 1)):
        msg = outcome(learner, api, with_arg(api, i, long))
        assert msg is None or ("limit" in msg or "characters" in msg), msg
    out, status = learner.predict(*with_arg("sample_generate", 1, long), api_name="/sample_generate")
    assert out and status
    assert_alive(learner)


def test_a_corpus_too_small_for_one_batch(learner, scratch):
    msg = outcome(scratch, "train_start", with_arg("train_start", 1, "too short"))
    check_message(msg, ["tokens", "more text"])
    msg = outcome(learner, "train_start", with_arg("train_start", 1, "too short"))  # a failed Start keeps the model
    check_message(msg, ["tokens", "more text"])
    assert_alive(learner)


def test_the_trained_model_serves_other_tabs_after_all_that(learner):
    html, table, *_ = learner.predict("my model (Train tab)", "It is a truth", api_name="/ce_score")
    assert "nats" in html or html
    assert_alive(learner)


# -------------------------------------------------------------------------------- untrusted model folders
@pytest.fixture(scope="module")
def bad_folders(tmp_path_factory):
    """A pickle-only folder, a truncated and a corrupt safetensors file, each beside a valid config.json."""
    from playground import checkpoints
    from playground.gpt import GPT, GPTConfig
    from playground.tokenizer import load_tokenizer

    tok = load_tokenizer()
    root = tmp_path_factory.mktemp("bad-models")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=16, n_embd=16, n_layer=1, n_head=2))
    out = {}
    for name in ("pickle", "truncated", "corrupt", "garbage header"):
        folder = checkpoints.save(checkpoints.Bundle(model, tok, {"arch": "gpt"}), root / name.replace(" ", "-"))
        weights = folder / "model.safetensors"
        raw = weights.read_bytes()
        if name == "pickle":
            weights.unlink()
            (folder / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
        elif name == "truncated":
            weights.write_bytes(raw[: len(raw) // 2])
        elif name == "corrupt":
            weights.write_bytes(raw[:8] + b"\xff" * 64 + raw[72:])
        else:
            weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
        out[name] = str(folder)
    return out


@pytest.mark.parametrize("kind, needle", [("pickle", "pickle"), ("truncated", "truncated|corrupt"),
                                          ("corrupt", "corrupt"), ("garbage header", "corrupt|JSON")])  # fmt: skip
@pytest.mark.parametrize("api, index", [("ce_score", 0), ("sample_generate", 0), ("orpo_breakdown", 0)])
def test_untrusted_model_folders(learner, bad_folders, kind, needle, api, index):
    msg = outcome(learner, api, with_arg(api, index, bad_folders[kind]))
    check_message(msg, [needle])
    assert_alive(learner)


# ---------------------------------------------------------------------------------------------- NaN and inf
def raw_call(app_url: str, api: str, data: list) -> tuple[str, str]:
    """(event, message) of one call sent as raw JSON, NaN included (what gradio_client refuses to send)."""
    body = json.dumps({"data": data}).encode()  # allow_nan: a literal NaN / Infinity in the JSON
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(f"{app_url}gradio_api/call/{api}", data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        event_id = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{app_url}gradio_api/call/{api}/{event_id}", timeout=120) as r:
        text = r.read().decode()
    events = re.findall(r"event: (\w+)\ndata: (.*)", text)
    kind, data_ = events[-1]
    if kind == "error":
        payload = json.loads(data_) if data_.startswith("{") else {"error": data_}
        return kind, str(payload.get("error") or "")
    return kind, data_


NAN_CASES = [(api, i, label, v) for api, labels in NUMBERS.items() for i, label in labels.items()
             for v in (math.nan, math.inf)]  # fmt: skip


@pytest.mark.parametrize("api, index, label, value", NAN_CASES, ids=[f"{a}[{i}]-{v}" for a, i, _, v in NAN_CASES])
def test_nan_and_inf(app_url, learner, api, index, label, value):
    kind, msg = raw_call(app_url, api, with_arg(api, index, value))
    assert kind == "error", f"{api}[{index}]={value} accepted: {msg[:200]}"
    check_message(msg, [label, "nan", "inf", "number"])
    assert_alive(learner)
