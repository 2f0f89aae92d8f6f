"""The ORPO tab: one preference pair with every number of the loss visible, then a few ORPO steps on it.

Thin handlers over `playground.orpo`: `example_breakdown` gives per-token log-probs of both replies and every
intermediate (P, odds, log odds, log odds ratio, sigmoid, L_OR, NLL, total); `orpo_steps` trains the learner's OWN
deep copy of the model (kept in the session, never the shared one) and streams the breakdown after each step.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import html
import math

import gradio as gr
import pandas as pd

from playground import data, orpo
from playground.limits import LIMITS, check_float, check_int, check_text
from playground.ui import common, share

DEFAULT_MODEL = "llama-base"
STEP_HEADERS = ["step", "loss", "log odds ratio", "chosen avg log p", "rejected avg log p", "sigmoid", "seconds"]
# the plot's three lines, in the order of the table's columns; mid tones, readable on the light and the dark page
PLOT_COLOURS = {"log odds ratio": "#6366f1", "chosen avg log p": "#16a34a", "rejected avg log p": "#dc2626"}
CUSTOM = "(write your own below)"


@functools.lru_cache(maxsize=1)
def examples() -> list[dict]:
    """Held-out pairs from the shipped preference data (read once, shared read-only by every user)."""
    return data.shipped_examples()


def example_fields(label: str) -> tuple[str, str, str]:
    for e in examples():
        if e["label"] == label:
            return e["prompt"], e["chosen"], e["rejected"]
    raise ValueError(f"Unknown example {label!r}: pick one from the list or write your own pair.")


# ----------------------------------------------------------------------------------------------- inputs
def read_pair(prompt, chosen, rejected) -> dict:
    limit = min(LIMITS.max_text_chars, 4000)
    return {
        "prompt": check_text(prompt, "prompt", limit),
        "chosen": check_text(chosen, "chosen reply", limit),
        "rejected": check_text(rejected, "rejected reply", limit),
    }


def read_lambda(lam) -> float:
    return check_float(lam, "lambda", 0.0, 10.0)


def model_for(choice: str, session: dict | None):
    """The learner's ORPO-trained copy of `choice` if they have one, else the shared model (read-only)."""
    mine = (session or {}).get("orpo_model")
    if mine and mine["source"] == choice:
        return mine["bundle"], mine["steps"]
    return common.resolve_bundle(choice, session), 0


def own_copy(choice: str, session: dict) -> dict:
    """The learner's own trainable copy of `choice`: {source, bundle, steps}. Made on first use by deep-copying the
    model (the tokenizer is read-only and shared), so the shared model is never trained."""
    mine = session.get("orpo_model")
    if mine and mine["source"] == choice:
        return mine
    bundle = common.resolve_bundle(choice, session)
    n_params = sum(p.numel() for p in bundle.model.parameters())
    if n_params > LIMITS.max_train_params:
        raise ValueError(
            f"{choice} has {n_params / 1e6:.0f}M parameters; ORPO steps here are limited to models of "
            f"{LIMITS.max_train_params / 1e6:.0f}M (PLAYGROUND_MAX_TRAIN_PARAMS raises it)"
        )
    model = common.register_trainable(copy.deepcopy(bundle.model), "copy", session)  # memory bounds
    mine = {
        "source": choice,
        "bundle": dataclasses.replace(bundle, model=model, info=dict(bundle.info or {})),
        "steps": 0,
    }
    session["orpo_model"] = mine
    return mine


# ------------------------------------------------------------------------------------------------ views
BYTE_SIGNS = {"<0x0A>": "\u21b5", "<0x09>": "\u21e5", "<0x0D>": "\u240d"}  # newline, tab, CR byte pieces: ↵ ⇥ ␍


def chips_html(view: orpo.ReplyView, tokenizer, title: str) -> str:
    """The reply as token chips coloured by log p (red: unlikely, green: likely), the value under each."""
    chips = []
    for tid, piece, lp in zip(view.token_ids, view.tokens, view.token_logps, strict=True):
        special = tokenizer.is_special(tid)
        text = piece if special else BYTE_SIGNS.get(piece, piece).replace("\u2581", " ").replace("\n", "\u21b5")
        chips.append(
            f"<span class='pg-tok{' special' if special else ''}' style='background:{_color(lp)}' "
            f"title='log p = {lp:.3f} (p = {math.exp(lp):.4f})'>{html.escape(text)}<sub>{lp:.1f}</sub></span>"
        )
    return (
        f"<div class='pg-orpo-reply'><b>{html.escape(title)}</b> · average log p = {view.avg_logp:.3f} "
        f"· {len(view.tokens)} tokens<div class='pg-tokens'>{''.join(chips)}</div></div>"
    )


def _color(logp: float) -> str:
    """log p in [-8, 0] -> a hue from red (0) to green (120), light enough to read black text on."""
    t = min(1.0, max(0.0, 1.0 + logp / 8.0))
    return f"hsl({120 * t:.0f}, 75%, 80%)"


def numbers_html(bd: orpo.Breakdown) -> str:
    """Every intermediate, chosen beside rejected, then the pair's figures; data-key attributes for tests."""

    def cell(key: str, value: float) -> str:
        return f"<td class='pg-num' data-key='{key}'>{_fmt(value)}</td>"

    per_reply = [
        ("avg_logp", "average log p", "log P = mean of the token log-probs"),
        ("p", "P", "exp(log P): geometric-mean token probability"),
        ("odds", "odds", "P / (1 - P)"),
        ("log_odds", "log odds", "log P - log(1 - P)"),
    ]
    rows = [
        f"<tr><th>{name}</th>{cell('chosen_' + k, getattr(bd.chosen, k))}"
        f"{cell('rejected_' + k, getattr(bd.rejected, k))}<td class='pg-formula'>{html.escape(f)}</td></tr>"
        for k, name, f in per_reply
    ]
    pair = [
        ("log_odds_ratio", "log odds ratio", "log odds(chosen) - log odds(rejected)"),
        ("sigmoid", "sigmoid(log odds ratio)", "how strongly the model prefers chosen, 0..1"),
        ("or_loss", "L_OR", "-log sigmoid(log odds ratio)"),
        ("nll", "NLL", "-log P(chosen): the supervised term"),
        ("loss", "total loss", f"NLL + lambda x L_OR, lambda = {bd.lam:g}"),
    ]
    rows += [
        f"<tr class='pg-pair'><th>{name}</th><td class='pg-num' colspan='2' data-key='{k}'>"
        f"{_fmt(getattr(bd, k))}</td><td class='pg-formula'>{html.escape(f)}</td></tr>"
        for k, name, f in pair
    ]
    return (
        "<table class='pg-orpo-table' style='border-collapse:collapse;font-variant-numeric:tabular-nums'>"
        "<thead><tr><th></th><th>chosen</th><th>rejected</th><th>formula</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3e}"


def reading(bd: orpo.Breakdown, steps: int) -> str:
    """A few sentences on what the numbers say."""
    who = "your ORPO-trained copy" + f" (after {steps} step{'s' * (steps != 1)})" if steps else "the model"
    prefers = "the chosen reply" if bd.log_odds_ratio > 0 else "the rejected reply"
    push = (
        "small: the model already prefers the chosen reply, so the odds-ratio term pushes only gently"
        if bd.or_loss < math.log(2)
        else "large: the model does not yet prefer the chosen reply, so the odds-ratio term pushes hard"
    )
    share = bd.lam * bd.or_loss / bd.loss if bd.loss > 0 else 0.0
    trunc = " The pair was too long for the model's context and was cut." if bd.truncated else ""
    return (
        f"**Reading.** For {who}, a token of the chosen reply has on average probability {bd.chosen.p:.4f} "
        f"(the geometric mean), a token of the rejected reply {bd.rejected.p:.4f}. In odds: "
        f"{_fmt(bd.chosen.odds)} vs {_fmt(bd.rejected.odds)}, so the log odds ratio is {bd.log_odds_ratio:.3f} and "
        f"the model currently prefers **{prefers}** (sigmoid = {bd.sigmoid:.3f}; 0.5 would be no preference). "
        f"L_OR = {bd.or_loss:.3f} is {push} (L_OR = ln 2 = 0.693 when the odds are equal). "
        f"The total {bd.loss:.3f} = NLL {bd.nll:.3f} + {bd.lam:g} x {bd.or_loss:.3f}: the odds-ratio term is "
        f"{share:.0%} of it. Gradient descent on this total raises the chosen reply's log-probs (both terms) and "
        f"lowers the rejected reply's (L_OR only).{trunc}"
    )


def render(bd: orpo.Breakdown, tokenizer, steps: int) -> tuple[str, str, str, str]:
    return (
        chips_html(bd.chosen, tokenizer, "chosen reply"),
        chips_html(bd.rejected, tokenizer, "rejected reply"),
        numbers_html(bd),
        reading(bd, steps),
    )


# --------------------------------------------------------------------------------------------- handlers
@common.friendly
def pick_example(label):
    if not label or label == CUSTOM:
        return gr.update(), gr.update(), gr.update()
    return example_fields(label)


@common.friendly
@common.gpu(duration=10)
def breakdown(choice, prompt, chosen, rejected, lam, session):
    """Chosen chips, rejected chips, numbers table, reading, status."""
    pair, lam = read_pair(prompt, chosen, rejected), read_lambda(lam)
    bundle, steps = model_for(choice, session)
    bd = orpo.example_breakdown(bundle.model, bundle.tokenizer, pair, lam)
    status = f"Model: {choice}" + (f" — your copy after {steps} ORPO step(s)." if steps else " (the shared model).")
    return (*render(bd, bundle.tokenizer, steps), status)


@common.friendly
@common.gpu(duration=lambda a: 10 + 1.0 * common.gpu_seconds(a, "n", 5))
def take_steps(choice, prompt, chosen, rejected, lam, n, lr, session):
    """Stream: chips, chips, numbers, reading, plot data, step table, status, session."""
    pair, lam = read_pair(prompt, chosen, rejected), read_lambda(lam)
    n = check_int(n, "Number of ORPO steps", 1, LIMITS.max_orpo_steps)
    lr = check_float(lr, "learning rate", 1e-6, 1e-1)
    session = session if isinstance(session, dict) else common.new_session()
    mine = own_copy(choice, session)
    bundle, done = mine["bundle"], mine["steps"]
    rows, plot = [], []
    for rec in orpo.orpo_steps(bundle.model, bundle.tokenizer, pair, n, lr=lr, lam=lam):
        if rec.step > 0:
            mine["steps"] = done + rec.step
        bd, step = rec.breakdown, done + rec.step
        rows.append(
            [step]
            + [round(v, 4) for v in (rec.loss, rec.log_odds_ratio, rec.chosen_logp, rec.rejected_logp, bd.sigmoid)]
            + [round(rec.seconds, 2)]
        )
        plot += [
            {"step": step, "value": v, "series": s}
            for s, v in zip(PLOT_COLOURS, (rec.log_odds_ratio, rec.chosen_logp, rec.rejected_logp), strict=True)
        ]
        status = f"Step {rec.step} of {n} on your own copy of {choice} ({mine['steps']} ORPO steps in all)."
        yield (
            *render(bd, bundle.tokenizer, mine["steps"]),
            pd.DataFrame(plot),
            pd.DataFrame(rows, columns=STEP_HEADERS),
            status,
            session,
        )


@common.friendly
def reset_copy(session):
    session = session if isinstance(session, dict) else common.new_session()
    had = session.get("orpo_model")
    session["orpo_model"] = None
    note = f"Dropped your ORPO copy of {had['source']} ({had['steps']} steps)." if had else "You had no ORPO copy."
    return note + " The breakdown now uses the shared model.", session


# ----------------------------------------------------------------------------------------------- layout
def build(ctx: common.TabContext) -> None:
    labels = [e["label"] for e in examples()]
    first = examples()[0]
    with gr.Tab("6 ORPO", id="orpo", elem_id="tab-orpo"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                common.lesson("orpo")
            with gr.Column(scale=3, min_width=340):
                with gr.Row():
                    model = common.model_picker("Model", value=DEFAULT_MODEL, elem_id="orpo-model")
                    lam = gr.Slider(
                        0.0,
                        2.0,
                        value=orpo.COURSE_LAMBDA,
                        step=0.05,
                        label="lambda (weight of L_OR)",
                        info="the course used 0.5; TRL's default is 0.1",
                        elem_id="orpo-lambda",
                    )
                example = gr.Dropdown(
                    [CUSTOM] + labels, value=labels[0], label="Example (held-out shipped pairs)", elem_id="orpo-example"
                )
                prompt = gr.Textbox(first["prompt"], label="Prompt", lines=2, elem_id="orpo-prompt")
                with gr.Row():
                    chosen = gr.Textbox(first["chosen"], label="Chosen reply", lines=3, elem_id="orpo-chosen-text")
                    rejected = gr.Textbox(
                        first["rejected"], label="Rejected reply", lines=3, elem_id="orpo-rejected-text"
                    )
                go = gr.Button("Compute the ORPO loss", variant="primary", elem_id="orpo-go")
                status = gr.Markdown(elem_id="orpo-status")
                chosen_html = gr.HTML(elem_id="orpo-chosen")
                rejected_html = gr.HTML(elem_id="orpo-rejected")
                numbers = gr.HTML(elem_id="orpo-numbers")
                read = gr.Markdown(elem_id="orpo-reading")
                with gr.Row():
                    n_steps = gr.Slider(
                        1,
                        LIMITS.max_orpo_steps,
                        value=min(10, LIMITS.max_orpo_steps),
                        step=1,
                        label="N",
                        elem_id="orpo-n",
                    )
                    lr = gr.Number(1e-3, label="learning rate", elem_id="orpo-lr")
                with gr.Row():
                    steps_btn = gr.Button(
                        "Take N ORPO steps on this example", variant="primary", elem_id="orpo-steps-btn"
                    )
                    stop_btn = gr.Button("Stop", elem_id="orpo-stop")
                    reset_btn = gr.Button("Reset to the original model", elem_id="orpo-reset")
                plot = gr.LinePlot(
                    x="step",
                    y="value",
                    color="series",
                    color_map=PLOT_COLOURS,
                    label="per step",
                    height=260,
                    elem_id="orpo-plot",
                    buttons=["export", "fullscreen"],
                )
                common.plot_legend(PLOT_COLOURS, "orpo-legend")
                table = gr.Dataframe(
                    headers=STEP_HEADERS, label="per step", interactive=False, elem_id="orpo-steps-table"
                )
                common.csv_export(table, "orpo-steps", "orpo_steps")
                share.register(
                    ctx,
                    "orpo",
                    {
                        "model": model,
                        "lam": lam,
                        "example": example,
                        "prompt": prompt,
                        "chosen": chosen,
                        "rejected": rejected,
                        "n": n_steps,
                        "lr": lr,
                    },
                )
        pair_in = [model, prompt, chosen, rejected, lam]
        example.change(pick_example, example, [prompt, chosen, rejected], api_name="orpo_example", **common.LIGHT)
        shown = [chosen_html, rejected_html, numbers, read]
        go.click(breakdown, pair_in + [ctx.session], shown + [status], api_name="orpo_breakdown", **common.LIGHT)
        run = steps_btn.click(
            take_steps,
            pair_in + [n_steps, lr, ctx.session],
            shown + [plot, table, status, ctx.session],
            api_name="orpo_steps",
            **common.HEAVY,
        )
        stop_btn.click(None, None, None, cancels=[run], api_name="orpo_stop")
        reset_btn.click(reset_copy, ctx.session, [status, ctx.session], api_name="orpo_reset", **common.LIGHT)
