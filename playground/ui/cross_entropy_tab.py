"""The Cross-entropy tab: score a text with a model token by token, the loss three ways, and "break it".

The handlers are thin: the numbers come from `playground.losses` (windowed_logits, cross_entropy_manual,
cross_entropy_torch, token_stats, break_it); this module bounds the input, finds each token's text, and turns
tensors into a table, coloured chips and small comparison tables.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
from dataclasses import dataclass

import gradio as gr
import torch

from playground import losses, models
from playground.limits import LIMITS, check_float, check_text
from playground.ui import common, share, start_tab

log = logging.getLogger(__name__)

DEFAULT_TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. Suddenly the spaceship landed in Tokyo."
)
TABLE_HEADERS = ["pos", "context's last token", "target", "p(target)", "-log p", "rank", "entropy"]
THREE_HEADERS = ["computation", "loss (nats)", "minus F.cross_entropy"]
BREAK_HEADERS = ["computation", "loss (nats)", "minus float64 reference", "verdict"]
# The break-it slider sets the largest logit to 10^x (the same x means the same for every model). Each dtype's
# range walks from "all agree" (e^10^x fits) through "naive breaks" (x > log10 ln max: 1.05 in float16, 1.95 in
# float32/bfloat16) to "even log-sum-exp loses" (the mean's sum or the logits themselves overflow: x ~ 4.2-5 in
# float16, ~37.5-38.6 in float32/bfloat16) and a little beyond.
BREAK_MAX_EXP = {"float32": 39.0, "bfloat16": 39.0, "float16": 6.0}
MAX_SCALE_EXP = max(BREAK_MAX_EXP.values())


@dataclass
class Scored:
    """A text scored by a model: N+1 token ids, N predictions (position t predicts token t+1)."""

    ids: list[int]
    surfaces: list[str]  # each token's text as it appears in the decoded text (N+1); "" for a partial character
    pieces: list[str]  # each token's vocabulary piece (`▁the`, `<0xF0>`), shown where the surface is empty
    logits: torch.Tensor  # (N, V) in the model's output dtype, on the CPU
    targets: torch.Tensor  # (N,) = ids[1:]
    stats: losses.TokenStats  # per prediction, shape (N,)
    vocab_size: int
    notes: list[str]  # truncation / windowing remarks for the learner


# ----------------------------------------------------------------------------------------------- scoring
def token_surfaces(tokenizer, ids: list[int]) -> list[str]:
    """Each token's text as it shows in the decoded text, from the differences of growing prefixes.

    Decoding one id alone loses SentencePiece's leading space and cannot show a byte of a multi-byte character.
    A prefix that ends in an unfinished character (U+FFFD) gives its token an empty surface; the token that
    completes the character gets the whole character. Empty surfaces are shown by their piece (`<0xF0>`).
    """
    prefixes = [tokenizer.decode(ids[:k]) for k in range(len(ids) + 1)]
    out, done = [], ""
    for k in range(len(ids)):
        cur = prefixes[k + 1]
        if cur.startswith(done) and not cur.endswith("\ufffd"):
            out.append(cur[len(done) :])
            done = cur
        else:
            out.append("")  # part of a character that a later token completes
    if prefixes[-1] != done and prefixes[-1].startswith(done):
        out[-1] += prefixes[-1][len(done) :]  # the text itself ends in an unfinished character
    return out


def token_label(sc: Scored, k: int) -> str:
    """What to show for token k: its text, or its piece name when it is only part of a character."""
    return sc.surfaces[k] or sc.pieces[k]


def score_text(bundle, text: str) -> Scored:
    """Tokenize `text` (bounded by LIMITS), run the model, and compute per-token statistics."""
    check_text(text, "text", LIMITS.max_text_chars)
    tokenizer, model = bundle.tokenizer, bundle.model
    ids = list(tokenizer.encode(text))
    notes = []
    if len(ids) < 2:
        raise ValueError(f"The text is {len(ids)} token long: type at least two tokens so one can be predicted.")
    if len(ids) > LIMITS.max_eval_tokens + 1:
        notes.append(f"The text has {len(ids):,} tokens; only the first {LIMITS.max_eval_tokens + 1:,} are scored.")
        ids = ids[: LIMITS.max_eval_tokens + 1]
    with models.eval_mode(model):  # dropout off: the loss of the model itself, not of a random sub-network
        logits, passes = losses.windowed_logits(model, ids, models.context_length(model))
    if passes > 1:
        notes.append(
            f"The text is longer than the model's context ({models.context_length(model)} tokens): read in {passes} "
            "overlapping windows, each token seeing at least half a context before it."
        )
    targets = torch.tensor(ids[1:], dtype=torch.long)  # (N,)
    stats = losses.token_stats(logits, targets)
    vocab = int(logits.shape[-1])
    pieces = [_piece(tokenizer, i) for i in ids]
    return Scored(ids, token_surfaces(tokenizer, ids), pieces, logits, targets, stats, vocab, notes)


def _piece(tokenizer, i: int) -> str:
    try:
        return str(tokenizer.id_to_piece(i))
    except (AttributeError, IndexError, KeyError, ValueError, TypeError):
        return f"<id {i}>"


# ------------------------------------------------------------------------------------------------- views
def visible(s: str) -> str:
    """A token's text with its whitespace made visible for a table cell."""
    return s.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def table_rows(sc: Scored) -> list[list]:
    st = sc.stats
    return [
        [
            t + 1,
            visible(token_label(sc, t)),
            visible(token_label(sc, t + 1)),
            float(f"{float(st.p_target[t]):.4g}"),
            round(float(st.nll[t]), 4),
            int(st.rank[t]),
            round(float(st.entropy[t]), 4),
        ]
        for t in range(len(sc.targets))
    ]


def surprise_colour(nll: float, scale: float) -> str:
    """Green (no surprise) to red (as surprised as a uniform guess, ln V, or more)."""
    t = min(max(nll / scale, 0.0), 1.0) if math.isfinite(nll) else 1.0
    return f"hsl({120 * (1 - t):.0f}, 75%, 78%)"


N_GUESSES = 10  # the model's top guesses shown when a chip is clicked


def top_guesses(sc: Scored, tokenizer, k: int = N_GUESSES) -> list[list[tuple[str, float]]]:
    """For each prediction t (of token t+1): the k most likely next tokens under softmax(logits[t]) in float32,
    as (piece, probability), most likely first."""
    probs = torch.softmax(sc.logits.float(), dim=-1)  # (N, V)
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [
        [(tokenizer.id_to_piece(int(i)) or f"#{int(i)}", float(p)) for p, i in zip(ps, ids, strict=True)]
        for ps, ids in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


def _guess_attr(guesses: list[tuple[str, float]]) -> str:
    data = [[visible_chip(piece.replace("\u2581", " ")), round(p, 5)] for piece, p in guesses]
    return html.escape(json.dumps(data, ensure_ascii=False), quote=True)


def chips_html(sc: Scored, guesses: list[list[tuple[str, float]]] | None = None) -> str:
    """The text as chips coloured by -log p; hover for the numbers, click a chip (with `guesses`) for the
    model's top guesses at that position (assets/page.js fills the panel). Every piece of text is escaped."""
    scale = math.log(sc.vocab_size)
    first = html.escape(visible_chip(token_label(sc, 0)))
    spans = [f"<span class='pg-tok pg-ce-first' title='no prediction: nothing comes before it'>{first}</span>"]
    for t in range(len(sc.targets)):
        nll, p, rank = float(sc.stats.nll[t]), float(sc.stats.p_target[t]), int(sc.stats.rank[t])
        tip = html.escape(f"p = {p:.4g}, -log p = {nll:.3f} nats, rank {rank}", quote=True)
        text = html.escape(visible_chip(token_label(sc, t + 1)))
        style = f"background:{surprise_colour(nll, scale)}"
        cls = "pg-tok pg-ce-tok" + ("" if sc.surfaces[t + 1] else " byte")  # a byte of an unfinished character
        top = ""
        if guesses is not None:
            top = f" data-top='{_guess_attr(guesses[t])}' data-p='{p:.5f}' tabindex='0' role='button'"
        spans.append(f"<span class='{cls}' style='{style}' title='{tip}' data-nll='{nll:.4f}'{top}>{text}</span>")
        if "\n" in sc.surfaces[t + 1]:
            spans.append("<br>")
    legend = (
        "<div class='pg-ce-legend'>surprise: <span style='background:linear-gradient(90deg, hsl(120,75%,78%), "
        f"hsl(60,75%,78%), hsl(0,75%,78%))'>&nbsp;0 nats &rarr; ln V = {scale:.2f} nats&nbsp;</span></div>"
    )
    panel = ""
    if guesses is not None:
        panel = (
            "<div class='pg-ce-guesses' aria-live='polite'><p class='pg-ce-guesses-title'>Click a token: the "
            f"model's top {N_GUESSES} guesses for it, from everything before it.</p><ol></ol></div>"
        )
    return f"<div class='pg-tokens pg-ce-chips' id='ce-chips-inner'>{''.join(spans)}</div>{legend}{panel}"


def visible_chip(s: str) -> str:
    return s.replace("\n", "↵") or "∅"


def three_way(sc: Scored) -> tuple[list[list], dict[str, float]]:
    """The loss computed three ways on the same logits, and each one's difference from PyTorch's."""
    values = {
        "naive manual (exp, normalise, -log)": float(losses.cross_entropy_manual(sc.logits, sc.targets, stable=False)),
        "stable manual (log-sum-exp)": float(losses.cross_entropy_manual(sc.logits, sc.targets, stable=True)),
        "F.cross_entropy": float(losses.cross_entropy_torch(sc.logits, sc.targets)),
    }
    ref = values["F.cross_entropy"]
    rows = [[name, _fmt(v), _fmt_diff(v - ref)] for name, v in values.items()]
    return rows, values


def summary_html(sc: Scored, loss: float) -> str:
    base = losses.uniform_loss(sc.vocab_size)
    worst = int(torch.argmax(sc.stats.nll))
    worst_tok = html.escape(visible(token_label(sc, worst + 1)))
    verdict = "about as good as" if abs(loss - base) < 0.05 else ("better than" if loss < base else "worse than")
    stats = [
        f"<span>loss <b id='ce-loss'>{loss:.4f}</b> nats/token</span>",
        f"<span>perplexity <b id='ce-ppl'>{losses.perplexity(loss):,.1f}</b></span>",
        f"<span>uniform baseline ln V <b id='ce-baseline'>{base:.2f}</b> (V = {sc.vocab_size:,})</span>",
        f"<span>tokens scored <b>{len(sc.targets):,}</b></span>",
    ]
    lines = [
        f"<div class='pg-stats'>{''.join(stats)}</div>",
        f"<p>The model is <b>{verdict}</b> a uniform guess on this text. Most surprising token: "
        f"<code>{worst_tok}</code> at position {worst + 1} (-log p = {float(sc.stats.nll[worst]):.2f} nats, "
        f"rank {int(sc.stats.rank[worst])}).</p>",
    ]
    lines += [f"<p class='pg-ce-note'>{html.escape(n)}</p>" for n in sc.notes]
    return "<div id='ce-summary-inner'>" + "".join(lines) + "</div>"


def write_csv(rows: list[list]) -> str:
    path = common.download_dir() / "cross_entropy_tokens.csv"  # earlier downloads are removed
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(TABLE_HEADERS)
        writer.writerows(rows)
    return str(path)


def break_view(r: losses.BreakResult) -> tuple[list[list], str]:
    """The table (each computation, its distance from the float64 reference, its verdict) and the verdict text,
    every word of it decided by `losses.break_judgement` from the numbers in the table."""
    judged = losses.break_judgement(r)
    rows = []
    for key, name in losses.BREAK_NAMES.items():
        value = getattr(r, key)
        ref_ok = math.isfinite(value) and math.isfinite(r.reference)
        status, why = judged[key]
        rows.append([name, _fmt(value), _fmt_diff(value - r.reference) if ref_ok else "-", status])
    rows.append(["float64 reference", _fmt(r.reference), "0", "reference"])
    return rows, _break_verdict(r, judged)


def _break_verdict(r: losses.BreakResult, judged: dict) -> str:
    limit = math.log(torch.finfo(losses.BREAK_DTYPES[r.dtype]).max)  # 88.7 (float32, bfloat16), 11.1 (float16)
    if math.isinf(r.max_logit):
        fate = f"it overflowed in the cast: {r.dtype}'s largest number is e^{limit:.1f}"
    else:
        fate = f"e^{r.max_logit:,.4g} {'overflows' if r.exp_overflows else 'fits'}: {r.dtype}'s limit is e^{limit:.1f}"
    head = f"In {r.dtype}, logits \u00d7 {r.scale:,.4g}: the largest logit is {r.max_logit:,.4g} ({fate})."
    lines = [html.escape(head)]
    if r.neg_inf:
        targets = f"{r.target_neg_inf} of them a target" if r.target_neg_inf else "none of them a target"
        lines.append(html.escape(f"{r.neg_inf} logit(s) became -inf in the cast: probability 0, {targets}."))
    if not math.isfinite(r.reference):
        lines.append(
            html.escape(
                f"Even the float64 reference on these cast logits is {_fmt(r.reference)}: the logits themselves no "
                "longer hold the answer, so no formula can recover it. Lower x."
            )
        )
    agree = [losses.BREAK_NAMES[k] for k, (st, _) in judged.items() if st == "agrees"]
    if len(agree) == 3:
        tol = losses.break_tolerance(r)
        lines.append(html.escape(f"All three agree with the float64 reference (within {tol:.2g}). Raise x."))
    else:
        if agree:
            lines.append(html.escape(f"Agree with the reference: {', '.join(agree)}."))
        for key, (status, why) in judged.items():
            if status != "agrees":
                lines.append(html.escape(f"{losses.BREAK_NAMES[key]}: {status} ({why})."))
    cls = "pg-ok" if len(agree) == 3 else "pg-bad"
    return f"<div id='ce-break-verdict' class='{cls}'>" + "".join(f"<p>{x}</p>" for x in lines) + "</div>"


def _fmt(v: float) -> str:
    return f"{v:.8f}" if math.isfinite(v) and abs(v) < 1e6 else f"{v:.10g}"  # enough digits to check a verdict


def _fmt_diff(d: float) -> str:
    return f"{d:+.2e}" if math.isfinite(d) else str(d)


# ---------------------------------------------------------------------------------------------- handlers
@common.friendly
@common.gpu(duration=15)
def score(model_choice: str, text: str, session: dict):
    """Score the text: summary, per-token table, coloured chips, the three computations, a CSV file."""
    check_text(text, "text", LIMITS.max_text_chars)
    bundle = common.resolve_bundle(model_choice, session)
    sc = score_text(bundle, text)
    rows = table_rows(sc)
    three_rows, values = three_way(sc)
    summary = summary_html(sc, values["stable manual (log-sum-exp)"])
    table = {"headers": TABLE_HEADERS, "data": rows}
    three = {"headers": THREE_HEADERS, "data": three_rows}
    return summary, table, chips_html(sc, top_guesses(sc, bundle.tokenizer)), three, write_csv(rows)


@common.friendly
@common.gpu(duration=15)
def break_naive(model_choice: str, text: str, scale_exp: float, dtype: str, session: dict):
    """Scale the model's logits for this text so the largest |logit| is 10^scale_exp, cast to dtype, and compute
    the loss three ways beside a float64 reference."""
    check_text(text, "text", LIMITS.max_text_chars)
    if dtype not in losses.BREAK_DTYPES:
        raise ValueError(f"Choose a dtype among {list(losses.BREAK_DTYPES)}, got {dtype!r}.")
    exp = check_float(scale_exp, f"The logit scale exponent x (in {dtype})", 0.0, BREAK_MAX_EXP[dtype])
    sc = score_text(common.resolve_bundle(model_choice, session), text)
    scale = losses.scale_for_largest(sc.logits, 10.0**exp)
    rows, verdict = break_view(losses.break_it(sc.logits, sc.targets, scale, dtype))
    return {"headers": BREAK_HEADERS, "data": rows}, verdict


def break_range(dtype: str, x):
    """The slider's range for this dtype (float16 runs out near 10^4.8, float32 and bfloat16 near 10^38.5)."""
    top = BREAK_MAX_EXP.get(dtype, BREAK_MAX_EXP["float32"])
    x = float(x) if isinstance(x, (int, float)) and math.isfinite(x) else 1.0
    if 0.0 <= x <= top:  # the value fits: leave it alone, so an x typed while this answer travels is not overwritten
        return gr.Slider(minimum=0.0, maximum=top)
    return gr.Slider(minimum=0.0, maximum=top, value=min(max(x, 0.0), top))


# ------------------------------------------------------------------------------------------------ layout
def build(ctx: common.TabContext) -> None:
    with gr.Tab("2 Cross-entropy", id="cross_entropy", elem_id="tab-cross_entropy"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                common.lesson("cross_entropy")
            with gr.Column(scale=3, min_width=340):
                model = common.model_picker(elem_id="ce-model")
                text = gr.Textbox(
                    value=DEFAULT_TEXT,
                    label="Text to score",
                    lines=4,
                    max_length=LIMITS.max_text_chars,
                    info=f"Up to {LIMITS.max_eval_tokens:,} tokens are scored.",
                    elem_id="ce-text",
                )
                go = gr.Button("Score", variant="primary", elem_id="ce-score")
                summary = gr.HTML(elem_id="ce-summary")
                chips = gr.HTML(elem_id="ce-chips")
                three = gr.Dataframe(
                    headers=THREE_HEADERS, label="The same loss three ways", interactive=False, elem_id="ce-three"
                )
                table = gr.Dataframe(
                    headers=TABLE_HEADERS,
                    label="Token by token: -log p and entropy in nats, rank 1 = the top guess "
                    "(to sort, open the ⋮ menu in a column's header)",
                    interactive=False,
                    max_height=420,
                    elem_id="ce-table",
                )
                csv_file = gr.File(label="The table as CSV", interactive=False, elem_id="ce-csv")
                with gr.Accordion("Break it: scale the logits, change the dtype", open=True, elem_id="ce-break"):
                    scale_exp = gr.Slider(
                        0.0,
                        BREAK_MAX_EXP["float32"],
                        value=1.0,
                        step=0.05,
                        label="Logit scale: the logits are multiplied so that the largest logit is 10^x",
                        elem_id="ce-scale",
                    )
                    dtype = gr.Radio(
                        list(losses.BREAK_DTYPES),
                        value="float32",
                        label="dtype",
                        elem_id="ce-dtype",
                    )
                    brk = gr.Button("Compute the three losses", elem_id="ce-break-go")
                    verdict = gr.HTML(elem_id="ce-break-verdict-box")
                    broken = gr.Dataframe(headers=BREAK_HEADERS, interactive=False, elem_id="ce-break-table")
                share.register(ctx, "cross_entropy", {"model": model, "text": text, "scale": scale_exp, "dtype": dtype})
                start_tab.next_step(ctx, "cross_entropy")  # the path through the tabs
        go.click(
            score,
            [model, text, ctx.session],
            [summary, table, chips, three, csv_file],
            api_name="ce_score",
            **common.LIGHT,
        )
        dtype.change(break_range, [dtype, scale_exp], [scale_exp], api_name="ce_break_range", **common.LIGHT)
        brk.click(
            break_naive,
            [model, text, scale_exp, dtype, ctx.session],
            [broken, verdict],
            api_name="ce_break",
            **common.LIGHT,
        )
