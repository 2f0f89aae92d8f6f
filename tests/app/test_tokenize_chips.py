"""Tokenize chips: byte-fallback pieces grouped under the character they spell, each chip titled with its id and
UTF-8 bytes; checked against Python's own UTF-8 encoder, then in the served page."""

from __future__ import annotations

import html
import re

import pytest

from playground import tokenizer as tk
from playground.ui import tokenize_tab

TEXT = "Hi こんにちは 🚀!"


@pytest.fixture(scope="module")
def tok():
    return tk.load_tokenizer(tk.BUNDLED)


def test_byte_pieces_group_into_their_characters(tok):
    ids = tok.encode(TEXT)
    groups = [g for g in tokenize_tab.byte_groups(tok, ids) if not isinstance(g, int)]
    assert groups, "the bundled tokenizer spells these characters with byte pieces"
    for char, members in groups:
        assert char and len(char) == 1
        assert bytes(tokenize_tab.byte_value(tok, i) for i in members) == char.encode("utf-8")
    assert "".join(c for c, _ in groups).startswith("こんにちは")
    flat = [i for g in tokenize_tab.byte_groups(tok, ids) for i in ([g] if isinstance(g, int) else g[1])]
    assert flat == ids  # grouping keeps every token, in order


def test_cut_bytes_stay_unnamed(tok):
    ids = [i for i in tok.encode("こ") if tok.is_byte(i)]
    assert len(ids) == 3
    assert tokenize_tab.byte_groups(tok, ids[:2]) == [("", ids[:2])]  # a character cut off: no name invented
    assert tokenize_tab.byte_groups(tok, ids[1:]) == [("", ids[1:2]), ("", ids[2:])]  # continuation bytes alone


def test_chip_titles_carry_id_and_bytes(tok):
    ids = tok.encode(TEXT)
    page = tokenize_tab.chips_html(tok, ids, "t")
    for i, utf8 in re.findall(r"data-id='(\d+)' title='id \d+[^;]*; UTF-8 bytes: ([0-9A-F ]+)'", page):
        piece = tok.id_to_piece(int(i))
        want = piece[3:5] if tok.is_byte(int(i)) else " ".join(f"{b:02X}" for b in piece.replace("▁", " ").encode())
        assert utf8 == want
    chars = [g for g in tokenize_tab.byte_groups(tok, ids) if not isinstance(g, int)]
    assert page.count("class='pg-char'") == len(chars)
    assert "<span class='pg-char-label'>こ</span>" in page


def test_grouped_chips_in_the_served_page(client):
    out = client.predict(TEXT, tokenize_tab.BUNDLED_LABEL, tokenize_tab.NONE, api_name="/tokenize")
    chips = out[1]
    assert "<span class='pg-char-label'>🚀</span>" in chips


def test_text_view_spells_the_text_and_links_every_chip(tok):
    ids = tok.encode(TEXT)
    page = tokenize_tab.chips_html(tok, ids, "t")
    view = page[: page.index("<div class='pg-tokens'")]
    stretches = re.findall(r"<span class='pg-span' data-k='(\d+)'>(.*?)</span>", view, flags=re.S)
    assert html.unescape("".join(s for _, s in stretches)) == TEXT  # the text itself, cut at token boundaries
    keys = [k for k, _ in stretches]
    assert keys == [str(k) for k in range(len(keys))]
    chips = page[page.index("<div class='pg-tokens'") :]
    assert sorted(set(re.findall(r"data-k='(\d+)'", chips)), key=int) == keys  # every stretch has its chip(s)
