"""The Tokenize tab's endpoints on the real server, through gradio_client."""

import re

import pytest
from gradio_client import Client

from playground.ui import tokenize_tab as tt

BUNDLED = tt.BUNDLED_LABEL


def stat(html: str, key: str) -> float:
    m = re.search(rf"data-key='{re.escape(key)}'>[^<]*<b>([\d,.]+)</b>", html)
    assert m, f"no {key!r} in {html[:300]}"
    return float(m.group(1).replace(",", ""))


@pytest.fixture()
def fresh(app_url):
    """A client of its own: its own session (trained tokenizers live per session)."""
    return Client(app_url, verbose=False)


def test_tokenize_shows_chips_counts_and_round_trip(client):
    text = "The President said in 1999: naïve 東京 🚀 <script>alert(1)</script>"
    stats, chips, table, stats_b, chips_b = client.predict(text, BUNDLED, tt.NONE, api_name="/tokenize")
    assert stat(stats, "characters") == len(text)
    n = stat(stats, "tokens")
    assert chips.count("class='pg-tok ") == n
    assert stat(stats, "byte-fallback pieces") >= 11  # 東京 is 6 bytes, 🚀 4, ï 2 (the bundled vocab has none)
    assert "class='pg-tok byte'" in chips and "&lt;0xE6&gt;" in chips
    assert "✓" in stats
    assert "<script>" not in chips and "&lt;script" not in chips.replace("&lt;0x3C&gt;", "")  # escaped, split
    rows = table["data"] if isinstance(table, dict) else table
    assert sum(r[2] for r in rows) == n and {r[3] for r in rows} >= {"piece", "byte"}
    assert "Pick a second tokenizer" in stats_b and chips_b == ""


def test_compare_side_by_side(client):
    text = "Emma Woodhouse, handsome, clever, and rich."
    stats, _, _, stats_b, chips_b = client.predict(text, BUNDLED, BUNDLED, api_name="/tokenize")
    assert stat(stats, "tokens") == stat(stats_b, "tokens") and "tok-chips-b-inner" in chips_b


def test_train_then_use_the_trained_tokenizer(fresh):
    status, path, choice, compare = fresh.predict(tt.CORPUS, "kjv", "", 400, "bpe", api_name="/train_tokenizer")
    assert "my bpe 400 #1" in status
    assert path and open(path, "rb").read(4)  # the .model file downloads
    name = "my bpe 400 #1"
    text = "And God said, Let there be light: and there was light."
    stats, chips, _, stats_b, _ = fresh.predict(text, name, BUNDLED, api_name="/tokenize")
    assert "vocabulary 400" in stats and "vocabulary 4,096" in stats_b
    assert stat(stats, "tokens") > stat(stats_b, "tokens")  # a smaller vocabulary needs more tokens
    # pasted text, another model type
    pasted = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(300))
    status, *_ = fresh.predict(tt.PASTE, "austen", pasted, 300, "unigram", api_name="/train_tokenizer")
    assert "my unigram 300 #2" in status and "pasted" in status


def test_lesson_step_4_vocabulary_300_trains_and_says_how(fresh):
    """Tokenize lesson, step 4: bpe with vocabulary 300 on austen trains a 300-piece tokenizer; the status says
    that coverage 0.995 needs more pieces, and which coverage was used instead."""
    from playground import corpus, sp_proto
    from playground import tokenizer as tk

    status, path, choice, _ = fresh.predict(tt.CORPUS, "austen", "", 300, "bpe", api_name="/train_tokenizer")
    least = int(re.search(r"needs at least (\d+) pieces", status).group(1))
    assert "(300 pieces)" in status and f"coverage {tt.FIT_COVERAGE}" in status and least > 300
    tok = tk.SentencePieceTokenizer(open(path, "rb").read())
    assert tok.vocab_size == 300 and sp_proto.trainer_settings(tok.to_bytes())["vocab_size"] == 300
    with pytest.raises(ValueError, match=rf"needs at least {least} pieces"):  # the number is SentencePiece's own
        tk.train_tokenizer(corpus.sample_corpus("austen", tt.TRAIN_CHARS), 300)
    stats, *_ = fresh.predict(
        "It is a truth universally acknowledged",
        choice["value"] if isinstance(choice, dict) else choice,
        BUNDLED,
        api_name="/tokenize",
    )
    assert "vocabulary 300" in stats


def test_trained_tokenizers_are_per_session(fresh, app_url):
    fresh.predict(tt.CORPUS, "austen", "", 500, "bpe", api_name="/train_tokenizer")
    other = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="my bpe 500 #1"):
        other.predict("hello", "my bpe 500 #1", tt.NONE, api_name="/tokenize")


@pytest.mark.parametrize(
    "args, message",
    [
        (("x" * 100_001, BUNDLED, tt.NONE), "100,001 characters"),
        (("hello", "not a hub id!!", tt.NONE), "not a bundled name, a folder, or a Hub id"),  # checkpoints.check_source
        (("hello", "nobody-here/no-such-tokenizer", tt.NONE), "offline"),
        (("hello", "/no/such/folder", tt.NONE), "no such file"),
    ],
)
def test_bad_tokenize_inputs_give_clear_errors(client, args, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name="/tokenize")
    stats, *_ = client.predict("still serving", BUNDLED, tt.NONE, api_name="/tokenize")
    assert stat(stats, "characters") == 13


@pytest.mark.parametrize(
    "args, message",
    [
        (
            (tt.CORPUS, "austen", "", 10, "bpe"),
            "(Vocabulary size must be a whole number from 64|less than minimum value 64)",
        ),
        ((tt.CORPUS, "austen", "", 100, "bpe"), r"too small for this text: the smallest that trains is \d+"),
        ((tt.PASTE, "austen", "tiny text", 5000, "bpe"), "too big for this text"),
        ((tt.PASTE, "austen", "   ", 500, "bpe"), "empty"),
        ((tt.CORPUS, "shakespeare", "", 500, "bpe"), "(unknown corpus|not in the list of choices)"),
    ],
)
def test_bad_training_inputs_give_clear_errors(client, args, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name="/train_tokenizer")


def test_odd_and_long_text_is_handled(client):
    for text in ["\x00\x01\x1b control", "שלום עולם مرحبا", "👨‍👩‍👧 e\u0301", "\n\n\t", "a" * 100_000]:
        stats, chips, *_ = client.predict(text, BUNDLED, tt.NONE, api_name="/tokenize")
        assert stat(stats, "characters") == len(text) and "✓" in stats
    assert "showing the first 3,000" in chips
    stats, *_ = client.predict("", BUNDLED, tt.NONE, api_name="/tokenize")
    assert "Type or paste" in stats


def test_course_settings_one_click_away_beside_the_bundled(fresh):
    """Train the course's exact settings and the full-coverage preset live on the same sample; beside the bundled
    tokenizer, printable ASCII falls back to bytes only under the course's coverage (counted independently here)."""
    import string

    text = "Hello! In 2024, Paris? (#1) {x: [y]} a<b>c ~5% `code` | ^ = @ & * + _ ; : / $ PQXZ"
    course, full = list(tt.SETTINGS)
    fresh.predict(tt.CORPUS, "all", "", 1000, "bpe", course, api_name="/train_tokenizer")
    status, *_ = fresh.predict(tt.CORPUS, "all", "", 1000, "bpe", full, api_name="/train_tokenizer")
    assert "full coverage" in status
    mine_course, mine_full = "my bpe 1000 #1", "my bpe 1000 #2"
    stats_c, chips_c, _, stats_b, _ = fresh.predict(text, mine_course, BUNDLED, api_name="/tokenize")
    stats_f, *_ = fresh.predict(text, mine_full, tt.NONE, api_name="/tokenize")
    assert stat(stats_b, "byte-fallback pieces") == 0 == stat(stats_f, "byte-fallback pieces")
    assert stat(stats_c, "byte-fallback pieces") >= 5
    # the byte chips of the course tokenizer are printable ASCII characters' UTF-8 bytes
    assert "&lt;0x21&gt;" in chips_c or "<0x21>" in chips_c  # "!"
    assert all(c in string.printable for c in text)


def test_live_tokenizing_is_one_event_whose_last_change_wins(app_url):
    """The text, the tokenizer and the comparison re-tokenize through one event with trigger_mode always_last, so
    a page's requests run one after another: three events ran side by side, and the answer for an older text could
    land after the newer one's and stay on screen (CI saw an emptied text box keep its old counts for 60 s)."""
    import json
    import urllib.request

    config = json.loads(urllib.request.urlopen(app_url + "config", timeout=30).read())
    elem = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    watched = {"tok-text", "tok-choice", "tok-compare"}
    live = [
        d
        for d in config["dependencies"]
        if any(elem.get(t[0]) in watched and t[1] == "change" for t in d["targets"])
        and d.get("api_name", "").startswith("tokenize")
    ]
    assert len(live) == 1, [(d.get("api_name"), d["targets"]) for d in live]
    assert {elem[t[0]] for t in live[0]["targets"]} == watched and live[0]["trigger_mode"] == "always_last"
