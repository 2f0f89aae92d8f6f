"""The Cross-entropy tab through gradio_client on the real server: table, three numbers, break-it, bad inputs."""

from __future__ import annotations

import csv
import math
import re

import pytest
from gradio_client.exceptions import AppError

from playground import CHECKPOINTS

DEFAULT_TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. Suddenly the spaceship landed in Tokyo."
)


def tiny_model_source(folder) -> str:
    """The bundled "gpt-tiny" when it exists; else a tiny random GPT saved with `checkpoints.save` to `folder`.

    The tokenizer is the bundled one when it has been built, else a small BPE trained here on Austen.
    """
    if (CHECKPOINTS / "gpt-tiny").is_dir():
        return "gpt-tiny"
    import torch

    from playground import checkpoints, corpus, gpt
    from playground import tokenizer as tk

    try:
        tok = tk.load_tokenizer("bundled")
    except ValueError:
        tok = tk.train_tokenizer(corpus.read_corpus("austen")[:200_000], vocab_size=512)
    torch.manual_seed(0)
    # context 32: a 60-token text needs several windows, which the tests check
    model = gpt.new_gpt("tiny", vocab_size=tok.vocab_size, context_length=32, n_embd=32, n_layer=2, n_head=2)
    checkpoints.save(checkpoints.Bundle(model, tok, {"arch": "gpt", "source": "test"}), folder)
    return str(folder)


@pytest.fixture(scope="module")
def model_source(tmp_path_factory):
    return tiny_model_source(tmp_path_factory.mktemp("ce-model") / "tiny-gpt")


def score(client, source, text=DEFAULT_TEXT):
    return client.predict(source, text, api_name="/ce_score")


def number(html: str, elem_id: str) -> float:
    m = re.search(rf"id='{elem_id}'>([^<]+)<", html)
    assert m, (elem_id, html)
    return float(m.group(1).replace(",", ""))


def test_score_table_sums_to_the_loss_and_the_three_agree(client, model_source):
    summary, table, chips, three, csv_path = score(client, model_source)
    loss, ppl, base = number(summary, "ce-loss"), number(summary, "ce-ppl"), number(summary, "ce-baseline")
    assert table["headers"] == ["pos", "context's last token", "target", "p(target)", "-log p", "rank", "entropy"]
    rows = table["data"]
    assert len(rows) > 10 and [r[0] for r in rows] == list(range(1, len(rows) + 1))
    nlls = [float(r[4]) for r in rows]
    assert sum(nlls) / len(nlls) == pytest.approx(loss, abs=2e-4)  # the table is rounded to 4 decimals
    assert ppl == pytest.approx(math.exp(loss), rel=2e-3)
    for r in rows:
        assert float(r[3]) == pytest.approx(math.exp(-float(r[4])), rel=2e-3)
        assert 1 <= int(r[5]) and float(r[6]) >= 0
    vocab = int(re.search(r"V = ([\d,]+)", summary).group(1).replace(",", ""))
    assert base == pytest.approx(math.log(vocab), abs=0.01)
    values = {r[0]: float(r[1]) for r in three["data"]}
    assert len(values) == 3 and max(values.values()) - min(values.values()) < 1e-5, values
    assert chips.count("pg-ce-tok") == len(rows) and "background:hsl(" in chips
    with open(csv_path, newline="", encoding="utf-8") as f:
        written = list(csv.reader(f))
    assert len(written) == len(rows) + 1 and written[0][0] == "pos"
    if model_source != "gpt-tiny":  # the random model's context is 32 tokens: the text is read in windows
        assert "overlapping windows" in summary


def test_text_is_escaped_in_the_chips(client, model_source):
    _, _, chips, _, _ = score(client, model_source, "<script>alert('x')</script> & <b>bold</b>")
    assert "<script>" not in chips and "<b>bold" not in chips and "&lt;" in chips


@pytest.mark.parametrize(
    "dtype, exp, naive_finite",
    [("float32", 0.0, "yes"), ("float32", 3.0, "NO"), ("bfloat16", 3.0, "NO"), ("float16", 2.0, "NO")],
)
def test_break_it(client, model_source, dtype, exp, naive_finite):
    table, verdict = client.predict(model_source, DEFAULT_TEXT, exp, dtype, api_name="/ce_break")
    rows = {r[0]: r for r in table["data"]}
    assert rows["naive manual"][2] == naive_finite
    assert rows["stable manual (log-sum-exp)"][2] == "yes" and rows["F.cross_entropy"][2] == "yes"
    ref = float(rows["float64 reference"][1])
    rel = 1e-5 if dtype == "float32" else 2e-2
    assert float(rows["stable manual (log-sum-exp)"][1]) == pytest.approx(ref, rel=rel)
    assert dtype in verdict and ("overflows" in verdict) == (naive_finite == "NO")


def test_break_it_past_the_dtype_says_so(client, model_source):
    table, verdict = client.predict(model_source, DEFAULT_TEXT, 6.0, "float16", api_name="/ce_break")
    assert "no longer fit float16" in verdict


@pytest.mark.parametrize(
    "args, message",
    [
        (("MODEL", "   "), "empty"),
        (("MODEL", "x" * 100_001), "limit"),
        (("MODEL", "a"), "at least two tokens"),
        (("/no/such/folder", DEFAULT_TEXT), "folder"),
        (("my model (Train tab)", DEFAULT_TEXT), "Train tab"),
    ],
)
def test_bad_inputs_give_clear_errors(client, model_source, args, message):
    args = tuple(model_source if a == "MODEL" else a for a in args)
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/ce_score")


@pytest.mark.parametrize("exp, dtype", [(9.0, "float32"), (1.0, "int8")])
def test_break_it_bad_settings(client, model_source, exp, dtype):
    with pytest.raises(AppError, match="maximum|choices|exponent|dtype"):
        client.predict(model_source, DEFAULT_TEXT, exp, dtype, api_name="/ce_break")


def test_long_text_is_truncated_with_a_note_and_the_server_keeps_serving(client, model_source):
    summary, table, *_ = score(client, model_source, DEFAULT_TEXT * 40)
    assert "only the first" in summary and len(table["data"]) <= 1024
    summary, *_ = score(client, model_source)  # still serving after the errors above
    assert "ce-loss" in summary
