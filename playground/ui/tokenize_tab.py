"""The Tokenize tab: text -> coloured token chips with ids and counts, a side-by-side comparison, and training a
tokenizer of your own in seconds.

Handlers are thin adapters over `playground.tokenizer` and `playground.corpus`. Tokenizers this learner trains
live in their session (`session["tokenizers"]`: name -> serialized .model bytes); shared ones (the bundled one,
Hub / folder ones) are loaded once and cached read-only.
"""

from __future__ import annotations

import html
import logging
import re
import time
import unicodedata
from collections import Counter
from pathlib import Path

import gradio as gr

from playground import checkpoints, corpus
from playground import tokenizer as tk
from playground.limits import LIMITS, check_int, check_text
from playground.shared_cache import SharedCache
from playground.ui import common, share, start_tab

log = logging.getLogger(__name__)

BUNDLED_LABEL = "bundled BPE 4096"
NONE = "(none)"
DEFAULT_TEXT = (
    "The President said in 1999: tokenization isn't magic! 🚀\nCafé crème, naïve façade, 東京 and שלום are rarer here."
)
MAX_CHIPS = 3000  # chips drawn in the page (counts always cover the whole text)
MAX_TABLE_ROWS = 300
TRAIN_CHARS = 500_000  # text a tokenizer is trained on here: a few seconds on 2 cores for every model type
PASTE, CORPUS = "paste text", "a bundled corpus"
TABLE_HEADERS = ["id", "piece", "count", "kind"]
STAT_KEYS = ("characters", "tokens", "characters per token", "unique tokens", "byte-fallback pieces")

_SHARED = SharedCache(capacity=8, pinned=(tk.BUNDLED,))  # read-only tokenizers shared by every user


# ----------------------------------------------------------------------------------------- tokenizers
def choices(session: dict | None) -> list[str]:
    return [BUNDLED_LABEL, *((session or {}).get("tokenizers") or {})]


def resolve(choice: str, session: dict | None) -> tk.Tokenizer:
    """The tokenizer a dropdown value means: bundled, one trained in this session, a folder or a Hub id."""
    choice = (choice or "").strip()
    if not choice:
        raise ValueError("Choose a tokenizer first.")
    mine = (session or {}).get("tokenizers") or {}
    if choice in mine:
        return tk.SentencePieceTokenizer(mine[choice], name=choice)
    # the same source policy as models: bundled, Hub ids, local paths only where allowed
    key = tk.BUNDLED if choice == BUNDLED_LABEL else checkpoints.check_source(choice, extra_names=(tk.BUNDLED,))
    return _SHARED.get(key, lambda: tk.load_tokenizer(key))  # loaded once, outside any lock others need


# ------------------------------------------------------------------------------------------- analysis
def analyse(tok: tk.Tokenizer, text: str) -> dict:
    """Everything the view shows about `text` under `tok`: ids, counts and the round-trip check."""
    ids = tok.encode(text)
    n_bytes = sum(tok.is_byte(i) for i in ids)
    decoded = tok.decode(ids)
    return {
        "ids": ids,
        "characters": len(text),
        "tokens": len(ids),
        "characters per token": round(len(text) / len(ids), 2) if ids else 0.0,
        "unique tokens": len(set(ids)),
        "byte-fallback pieces": n_bytes,
        "round trip": decoded == text,
        "decoded": decoded,
    }


def visible(piece: str) -> str:
    """A piece made readable: control characters as escapes (\\n, \\t, \\x00); `▁` stays, it is the space mark."""
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
    return "".join(
        named.get(c, f"\\x{ord(c):02x}") if unicodedata.category(c) in ("Cc", "Cf") and c != "\u200d" else c
        for c in piece
    )


def colour(i: int) -> str:
    """A pastel colour per id (golden-angle hues: neighbouring ids look different)."""
    return f"hsl({(i * 137.508) % 360:.0f}, 70%, 82%)"


def chips_html(tok: tk.Tokenizer, ids: list[int], elem: str) -> str:
    """The tokens as chips: the piece (escaped) with its id beneath; bytes and specials marked. Byte-fallback
    pieces that together spell one character sit in one box under that character (こ over its three bytes).
    Hovering a chip shows its id and UTF-8 bytes (title) and lights up the chips of the same character."""
    spans, shown = [], ids[:MAX_CHIPS]
    groups = byte_groups(tok, shown)
    for k, group in enumerate(groups):
        if isinstance(group, int):
            spans.append(_chip(tok, group).replace("<span ", f"<span data-k='{k}' ", 1))
            continue
        char, members = group
        inner = "".join(_chip(tok, i) for i in members)
        label = html.escape(visible(char)) if char else "?"
        what = f"U+{ord(char):04X}, " if len(char) == 1 else ""
        spans.append(
            f"<span class='pg-char' data-k='{k}' title='{label}: {what}{len(members)} byte pieces'>"
            f"<span class='pg-char-label'>{label}</span>{inner}</span>"
        )
    more = ""
    if len(ids) > MAX_CHIPS:
        more = f"<p class='pg-more'>… showing the first {MAX_CHIPS:,} of {len(ids):,} tokens (counts cover all).</p>"
    return f"{text_view(tok, shown, groups)}<div class='pg-tokens' id='{elem}-inner'>{''.join(spans)}</div>{more}"


def surfaces(tok: tk.Tokenizer, ids: list[int], window: int = 8) -> list[str]:
    """Each token's text in the decoded text: decode(previous `window` tokens + it) minus decode(the previous ones)
    (linear time; a SentencePiece decode drops the first token's space in both, so the difference keeps it). A byte
    that leaves its character unfinished gets "", the byte that completes it the whole character."""
    out = []
    for k in range(len(ids)):
        before = tok.decode(ids[max(0, k - window) : k]).rstrip("\ufffd")
        upto = tok.decode(ids[max(0, k - window) : k + 1])
        out.append("" if upto.endswith("\ufffd") or not upto.startswith(before) else upto[len(before) :])
    return out


def text_view(tok: tk.Tokenizer, ids: list[int], groups: list) -> str:
    """The text again, each token's (or grouped character's) stretch a span with the same data-k as its chip:
    hovering either lights both (assets/page.js)."""
    surf, parts, at = surfaces(tok, ids), [], 0
    for k, group in enumerate(groups):
        n = 1 if isinstance(group, int) else len(group[1])
        piece = "".join(surf[at : at + n])
        at += n
        parts.append(f"<span class='pg-span' data-k='{k}'>{html.escape(piece)}</span>")
    label = "the text, token by token: hover a stretch or a chip"
    return f"<div class='pg-tok-text' tabindex='0' role='region' aria-label='{label}'>{''.join(parts)}</div>"


def _chip(tok: tk.Tokenizer, i: int) -> str:
    piece = visible(tok.id_to_piece(i) or "")
    kind = "byte" if tok.is_byte(i) else "special" if tok.is_special(i) else ""
    text = html.escape(piece).replace("\u2581", "<span class='pg-ws'>\u2581</span>")
    surface = (tok.id_to_piece(i) or "").replace("\u2581", " ")  # the word-start mark stands for a space
    raw = bytes([byte_value(tok, i)]) if tok.is_byte(i) else surface.encode("utf-8")
    utf8 = " ".join(f"{b:02X}" for b in raw)
    return (
        f"<span class='pg-tok {kind}' style='background:{colour(i)}' data-id='{i}' "
        f"title='id {i}{' (' + kind + ')' if kind else ''}; UTF-8 bytes: {utf8 or 'none'}'>{text}<sub>{i}</sub></span>"
    )


def byte_value(tok: tk.Tokenizer, i: int) -> int:
    """The byte a byte-fallback piece stands for (`<0xE3>` -> 0xE3)."""
    m = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", tok.id_to_piece(i) or "")
    if m is None:
        raise ValueError(f"token {i} is not a byte piece")
    return int(m.group(1), 16)


def byte_groups(tok: tk.Tokenizer, ids: list[int]) -> list:
    """`ids` with each run of byte pieces cut into the characters they spell: an id stays an int; a character is
    (char, [its byte ids]). Bytes that spell no whole character (cut off, or invalid UTF-8) become ("", [ids])."""
    out: list = []
    pending: list[int] = []
    for i in [*ids, None]:
        if i is not None and tok.is_byte(i):
            pending.append(i)
            data = bytes(byte_value(tok, j) for j in pending)
            try:
                out.append((data.decode("utf-8"), pending))
                pending = []
            except UnicodeDecodeError:
                if len(pending) >= 4 or (pending and data[0] < 0x80) or data[0] & 0xC0 == 0x80:
                    out.append(("", pending))  # not the start of a character: leave it unnamed
                    pending = []
            continue
        if pending:
            out.append(("", pending))
            pending = []
        if i is not None:
            out.append(i)
    return out


def stats_html(tok: tk.Tokenizer, a: dict, elem: str) -> str:
    items = "".join(f"<span class='pg-stat' data-key='{k}'>{html.escape(k)}: <b>{a[k]:,}</b></span>" for k in STAT_KEYS)
    ok = a["round trip"]
    check = (
        "<span class='pg-ok' data-key='round trip'>decode(encode(text)) == text ✓</span>"
        if ok
        else "<span class='pg-bad' data-key='round trip'>decode(encode(text)) != text ✗ (this tokenizer is lossy "
        "here: normalisation or unknown characters); decoded: "
        f"<code data-key='decoded'>{html.escape(visible(a['decoded'][:500]))}</code></span>"
    )
    return (
        f"<div class='pg-stats' id='{elem}-inner'><span class='pg-tok-name'>{html.escape(tok.name)} "
        f"(vocabulary {tok.vocab_size:,})</span>{items}{check}</div>"
    )


def table_rows(tok: tk.Tokenizer, ids: list[int]) -> list[list]:
    rows = []
    for i, n in Counter(ids).most_common(MAX_TABLE_ROWS):
        kind = "byte" if tok.is_byte(i) else "special" if tok.is_special(i) else "piece"
        rows.append([i, visible(tok.id_to_piece(i) or ""), n, kind])
    return rows


def _empty(message: str) -> str:
    return f"<div class='pg-stats'><span>{html.escape(message)}</span></div>"


# ------------------------------------------------------------------------------------------- handlers
@common.friendly
def tokenize(text: str, choice: str, compare: str, session: dict):
    """-> stats, chips, table for `choice`; stats and chips for `compare` (empty when none)."""
    if text is None or text == "":
        hint = _empty("Type or paste some text to see its tokens.")
        return hint, "", [], "", ""
    if text.strip():
        check_text(text, "text", LIMITS.max_text_chars)
    # whitespace-only text is fine here: how spaces, tabs and newlines tokenize is worth seeing
    tok = resolve(choice, session)
    a = analyse(tok, text)
    out = [stats_html(tok, a, "tok-stats"), chips_html(tok, a["ids"], "tok-chips"), table_rows(tok, a["ids"])]
    if compare and compare != NONE:
        tok_b = resolve(compare, session)
        b = analyse(tok_b, text)
        out += [stats_html(tok_b, b, "tok-stats-b"), chips_html(tok_b, b["ids"], "tok-chips-b")]
    else:
        out += [_empty("Pick a second tokenizer to compare."), ""]
    return tuple(out)


@common.friendly
def train(
    source: str, corpus_name: str, text: str, vocab_size, model_type: str, settings: str = None, session: dict = None
):
    """Train a tokenizer on pasted text or a corpus sample; store it in this session; offer the .model file."""
    vocab_size = check_int(vocab_size, "Vocabulary size", 64, LIMITS.max_vocab_size)
    if model_type not in tk.MODEL_TYPES:
        raise ValueError(f"model type must be one of {tk.MODEL_TYPES}, got {model_type!r}")
    settings = settings or next(iter(SETTINGS))  # the course's settings unless another is chosen
    if settings not in SETTINGS:
        raise ValueError(f"settings must be one of {list(SETTINGS)}, got {settings!r}")
    if source == CORPUS:
        if corpus_name not in corpus.corpus_names():
            raise ValueError(f"unknown corpus {corpus_name!r}; choose one of {corpus.corpus_names()}")
        data = corpus.sample_corpus(corpus_name, TRAIN_CHARS)
        where = f"{len(data):,} characters of the {corpus_name} corpus (train split)"
    else:
        data = check_text(text, "training text", TRAIN_CHARS)
        where = f"{len(data):,} pasted characters"
    start = time.perf_counter()
    tok, fitted = _train_fitting(data, vocab_size, model_type, SETTINGS[settings])
    seconds = time.perf_counter() - start
    session = dict(session or {})
    mine = dict(session.get("tokenizers") or {})
    name = f"my {model_type} {vocab_size} #{len(mine) + 1}"
    mine[name] = tok.to_bytes()
    session["tokenizers"] = mine
    path = _download_file(name, tok.to_bytes())
    status = (
        f"Trained **{name}** ({tok.vocab_size:,} pieces) with the {settings} on {where} in {seconds:.1f} s.{fitted} "
        "It is now in the tokenizer lists above (this session only); download its `.model` file below."
    )
    pick = gr.Dropdown(choices=choices(session), value=name)
    other = gr.Dropdown(choices=[NONE, *choices(session)])
    return session, status, str(path), pick, other


# The two presets (playground.tokenizer.PRESETS): the course's exact settings, and the bundled tokenizer's.
SETTINGS = {
    "course settings (character_coverage 0.995)": "course",
    "full coverage (as the bundled tokenizer)": "full",
}


FIT_COVERAGE = 0.98  # the lowest character_coverage SentencePiece accepts


def _train_fitting(data: str, vocab_size: int, model_type: str, preset: str = "course"):
    """Train with the preset's settings; with the course's, if the vocabulary cannot hold the characters that its
    coverage (0.995) keeps, train again with coverage 0.98, so that rarer characters become byte pieces, and say so.
    (The full-coverage preset requires every printable ASCII character: no lower coverage can make room.)
    Returns the tokenizer and a sentence for the status ("" when nothing was changed)."""
    try:
        return tk.train_tokenizer(data, vocab_size, model_type, preset=preset), ""
    except ValueError as exc:
        first = re.search(r"needs at least (\d+) pieces", str(exc))
        if not first or preset != "course":
            raise
    try:
        tok = tk.train_tokenizer(data, vocab_size, model_type, preset=preset, character_coverage=FIT_COVERAGE)
    except ValueError as exc:
        again = re.search(r"needs at least (\d+) pieces", str(exc))
        least = again.group(1) if again else first.group(1)
        raise ValueError(
            f"Vocabulary size {vocab_size} is too small for this text: the smallest that trains is {least} "
            f"(with character coverage lowered to {FIT_COVERAGE}; {first.group(1)} at the course's "
            f"{tk.COURSE_SETTINGS['character_coverage']}). Choose at least {least}."
        ) from None
    return tok, (
        f" With the course's character coverage {tk.COURSE_SETTINGS['character_coverage']} it needs at least "
        f"{first.group(1)} pieces, so it was trained with coverage {FIT_COVERAGE}: the rarest characters are "
        "spelled as byte pieces."
    )


def _download_file(name: str, data: bytes) -> Path:
    path = common.download_dir() / (re.sub(r"[^\w.-]+", "_", name).strip("_") + ".model")
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------- layout
def _train_box() -> tuple:
    """The "Train your own tokenizer" panel: (source, corpus, text, vocabulary, model type, settings, button,
    status, download)."""
    with gr.Accordion("Train your own tokenizer", open=False, elem_id="tok-train-box"):
        source = gr.Radio([CORPUS, PASTE], value=CORPUS, label="Train on", elem_id="tok-source")
        corpus_name = gr.Dropdown(
            corpus.corpus_names(),
            value="austen",
            label="Corpus",
            info=f"The first {TRAIN_CHARS:,} characters of its train split",
            elem_id="tok-corpus",
        )
        train_text = gr.Textbox(
            label="Your text",
            lines=4,
            max_length=TRAIN_CHARS,
            placeholder="Paste a few pages of text here",
            elem_id="tok-train-text",
        )
        with gr.Row():
            vocab = gr.Slider(
                64, LIMITS.max_vocab_size, value=1000, step=1, label="Vocabulary size", elem_id="tok-vocab"
            )
            model_type = gr.Dropdown(
                list(tk.MODEL_TYPES),
                value="bpe",
                label="Model type",
                elem_id="tok-model-type",
            )
        settings = gr.Radio(
            list(SETTINGS),
            value=next(iter(SETTINGS)),
            label="Settings",
            info="The course's coverage leaves rare characters (some digits, ! ? #, capitals) to byte "
            "fallback; full coverage gives every printable ASCII character a piece. Train one, then pick "
            "it beside 'bundled' above to compare.",
            elem_id="tok-settings",
        )
        train_btn = gr.Button("Train", elem_id="tok-train")
        status = gr.Markdown(elem_id="tok-train-status")
        download = gr.File(label="Your tokenizer (.model)", interactive=False, elem_id="tok-download")
    return source, corpus_name, train_text, vocab, model_type, settings, train_btn, status, download


def build(ctx: common.TabContext) -> None:
    with gr.Tab("1 Tokenize", id="tokenize", elem_id="tab-tokenize"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                common.lesson("tokenize")
            with gr.Column(scale=3, min_width=340):
                text = gr.Textbox(
                    value=DEFAULT_TEXT,
                    label="Text",
                    lines=4,
                    max_length=LIMITS.max_text_chars,
                    info=f"Up to {LIMITS.max_text_chars:,} characters.",
                    elem_id="tok-text",
                )
                with gr.Row():
                    hint = common.source_hint("The bundled one, yours")
                    choice = gr.Dropdown(
                        choices=[BUNDLED_LABEL],
                        value=BUNDLED_LABEL,
                        label="Tokenizer",
                        allow_custom_value=True,
                        info=hint,
                        elem_id="tok-choice",
                    )
                    compare = gr.Dropdown(
                        choices=[NONE, BUNDLED_LABEL],
                        value=NONE,
                        label="Compare with",
                        allow_custom_value=True,
                        info=hint,
                        elem_id="tok-compare",
                    )
                go = gr.Button("Tokenize", variant="primary", elem_id="tok-go")
                stats = gr.HTML(elem_id="tok-stats")
                chips = gr.HTML(elem_id="tok-chips")
                with gr.Accordion("Compared with", open=True, elem_id="tok-compare-box"):
                    stats_b = gr.HTML(elem_id="tok-stats-b")
                    chips_b = gr.HTML(elem_id="tok-chips-b")
                table = gr.Dataframe(
                    headers=TABLE_HEADERS,
                    label="Pieces by count",
                    interactive=False,
                    max_height=320,
                    elem_id="tok-table",
                    elem_classes=["pg-advanced"],
                )
                (source, corpus_name, train_text, vocab, model_type, settings, train_btn, status,
                 download) = _train_box()  # fmt: skip
                share.register(ctx, "tokenize", {"text": text, "tokenizer": choice, "compare": compare})
                start_tab.next_step(ctx, "tokenize")  # the path through the tabs
        inputs = [text, choice, compare, ctx.session]
        outputs = [stats, chips, table, stats_b, chips_b]
        go.click(tokenize, inputs, outputs, api_name="tokenize", **common.LIGHT)
        # live: counts and chips follow the typing. One event for the three triggers, so a page's requests run one
        # after another and the last change wins; three events ran side by side, and the answer for an older text
        # (a tokenizer change) could land after the one for the newer text and stay on screen (CI saw it).
        gr.on(
            [text.change, choice.change, compare.change],
            tokenize,
            inputs,
            outputs,
            api_name="tokenize_live",
            api_visibility="private",
            show_progress="hidden",
            trigger_mode="always_last",
            **common.LIGHT,
        )
        ctx.demo.load(tokenize, inputs, outputs, api_name="tokenize_on_load", api_visibility="private", **common.LIGHT)
        train_btn.click(
            train,
            [source, corpus_name, train_text, vocab, model_type, settings, ctx.session],
            [ctx.session, status, download, choice, compare],
            api_name="train_tokenizer",
            **common.HEAVY,
        ).then(tokenize, inputs, outputs, api_name="tokenize_after_train", api_visibility="private", **common.LIGHT)
