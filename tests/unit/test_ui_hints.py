"""Small texts of the page: pickers offer a local folder only where the server allows them; ORPO chips show a
newline byte piece as ↵ (issue 20)."""

from __future__ import annotations

import dataclasses

from playground import limits, orpo
from playground import tokenizer as tk
from playground.ui import common, orpo_tab


def test_source_hint_follows_the_local_folder_switch(monkeypatch):
    for allowed in (True, False):
        monkeypatch.setattr(limits, "LIMITS", dataclasses.replace(limits.LIMITS, allow_local_paths=allowed))
        hint = common.source_hint("A bundled model")
        assert ("local folder" in hint) is allowed and hint.startswith("A bundled model") and "Hub id" in hint


def test_orpo_newline_byte_piece_shows_as_return_sign():
    tok = tk.load_tokenizer(tk.BUNDLED)
    ids = tok.encode("a\nb")
    pieces = [tok.id_to_piece(i) for i in ids]
    # a newline is a byte piece (<0x0A>) or, with a tokenizer covering ASCII, a piece of its own: both show ↵
    view = orpo.ReplyView(pieces, ids, [-1.0] * len(ids), -1.0, 0.37, 0.58, -0.54)
    chips = orpo_tab.chips_html(view, tok, "reply")
    assert "↵" in chips and "0x0A" not in chips
