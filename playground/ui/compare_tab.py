"""The Aligned-vs-base tab: one prompt, the same sampling settings and seed, two models side by side.

Both columns stream together: the handler advances each model's `sampling.generate` iterator in turn, so the two
answers grow at the same pace. Each side has its own torch.Generator seeded with the same seed, so each column is
reproducible on its own. A chat model gets its prompt through its tokenizer's chat template (ours for the bundled
models, the Hub model's own for SmolLM2-Instruct); a base model gets the raw text, as in the course (notes 74-76).
"""

from __future__ import annotations

import html
import re
import time

import gradio as gr
import pandas as pd
import torch

from playground import data, losses, models, sampling, spaces_support
from playground.limits import LIMITS, check_int, check_text
from playground.ui import common, share, start_tab
from playground.ui.sample_tab import Settings, Throttle, crop_note, prompt_ids, sampling_controls

COURSE_PROMPT = "What is a food recipe using apple?"  # the course's question (notes 76)
# What the tab offers for the bundled pair: held-out multiple-choice questions (options in the prompt), the kind of
# prompt llama-aligned was tuned on and never saw; its greedy answers are checked by tests/app/test_compare_demo.py.
DEMO = data.demo_questions()
DEFAULT_PROMPT = DEMO[0]["prompt"] if DEMO else COURSE_PROMPT
BUNDLED_PAIR = spaces_support.BUNDLED_PAIR
CHAT_LABEL = "apply the chat template"
HUB_PAIR = spaces_support.HUB_PAIR
CHAT_NAME = re.compile(r"aligned|instruct|chat|orpo|-it\b|sft|dpo", re.IGNORECASE)


def looks_like_chat(choice: str | None) -> bool:
    """A first guess at whether a model was tuned on chat turns (the learner can override the checkbox)."""
    return bool(choice and CHAT_NAME.search(str(choice)))


def load_side(choice: str, session, side: str):
    """The bundle for one column, with a message that says which column and why when it cannot load."""
    try:
        return common.resolve_bundle(choice, session)
    except Exception as exc:  # noqa: BLE001 - every load failure becomes a message for the learner
        hub = "/" in str(choice) and not str(choice).startswith(("/", ".", "~"))
        hint = (
            " Hub models need an internet connection the first time (this server may be offline); "
            "the bundled llama-base / llama-aligned pair works offline."
            if hub
            else ""
        )
        raise ValueError(f"The {side} model {choice!r} could not be loaded: {str(exc).rstrip('.')}.{hint}") from exc


def build_prompt(bundle, prompt: str, chat: bool) -> tuple[list[int], str]:
    """Ids and the exact string the model reads: the chat template (with its special tokens) or the raw text."""
    tok = bundle.tokenizer
    if chat:
        messages = [{"role": "user", "content": prompt}]
        return tok.apply_chat_template(messages, add_generation_prompt=True), tok.render_chat(messages, True)
    ids = prompt_ids(tok, prompt)
    return ids, tok.decode(ids)


def response_text(tokenizer, new: list[int]) -> str:
    ended = bool(new) and new[-1] == tokenizer.eos_id
    text = tokenizer.decode(new[:-1] if ended else new)
    return text + ("  ■ [end of sequence]" if ended else "")


def _column(answers: list[str], current: str | None, a: int) -> str:
    parts = [f"── answer {i + 1} ──\n{t}" for i, t in enumerate(answers)]
    if current is not None:
        parts.append(f"── answer {a + 1} ──\n{current}")
    return "\n\n".join(parts)


@common.friendly
@common.gpu(duration=lambda a: 10 + 0.06 * common.gpu_seconds(a, "max_new", 64) * common.gpu_seconds(a, "n_answers", 1))
def stream_compare(
    left, right, prompt, chat_left, chat_right, temperature, top_k, top_p, max_new, n_answers, seed, session
):
    """Yield (left text, right text, left prompt string, right prompt string, status) as both columns grow."""
    prompt = check_text(prompt, "prompt")
    s = Settings.from_ui(temperature, top_k, top_p, seed)
    max_new = check_int(max_new, "Max new tokens", 1, LIMITS.max_new_tokens)
    n_answers = check_int(n_answers, "Number of answers", 1, LIMITS.max_answers)
    bundles = [load_side(left, session, "left"), load_side(right, session, "right")]
    sides = []
    for bundle, chat in zip(bundles, (bool(chat_left), bool(chat_right)), strict=True):
        ids, shown = build_prompt(bundle, prompt, chat)
        ids, dropped = sampling.crop_prompt(ids, models.context_length(bundle.model))
        sides.append(
            {
                "bundle": bundle,
                "ids": ids,
                "shown": shown,
                "note": crop_note(dropped, len(ids)),
                "gen": s.generator(),
                "done": [],
            }
        )
    shown, throttle, t0 = (sides[0]["shown"], sides[1]["shown"]), Throttle(), time.perf_counter()
    for a in range(n_answers):
        for item in _interleave(sides, s, max_new):
            if not throttle.ready():
                continue
            texts = [
                _column(side["done"], response_text(side["bundle"].tokenizer, new), a)
                for side, new in zip(sides, item, strict=True)
            ]
            yield texts[0], texts[1], *shown, f"Answer {a + 1} of {n_answers}…", gr.skip()
    notes = "".join(
        f" {name}:{side['note']}" for name, side in zip(("Left", "Right"), sides, strict=True) if side["note"]
    )
    yield (
        _column(sides[0]["done"], None, 0),
        _column(sides[1]["done"], None, 0),
        *shown,
        f"Done: {n_answers} answer(s) per model, seed {s.seed}, in {time.perf_counter() - t0:.2f} s.{notes}",
        gr.LinePlot(eos_frame(sides, (left, right)), color_map=eos_colours((left, right))),
    )


EOS_COLUMN = "p_eos"
EOS_COLOURS = {"left": "#d97706", "right": "#6366f1"}  # each column's model, in the plot and in its legend


def eos_colours(names: tuple[str, str]) -> dict[str, str]:
    """The plot's colour for each line of eos_frame (named "left: <model>", "right: <model>")."""
    return {f"{where}: {name}": colour for (where, colour), name in zip(EOS_COLOURS.items(), names, strict=True)}


def eos_probs(bundle, prompt: list[int], new: list[int]) -> list[float]:
    """p(end-of-sequence) before each generated token: softmax of the logits that token was drawn from, read back
    in one teacher-forced pass over prompt + answer (the same context generation saw, in windows if longer)."""
    eos = bundle.tokenizer.eos_id
    if eos is None or not new:
        return []
    with models.eval_mode(bundle.model):
        logits, _ = losses.windowed_logits(bundle.model, prompt + new, models.context_length(bundle.model))
    probs = torch.softmax(logits[len(prompt) - 1 :].float(), dim=-1)  # row k predicts new[k]
    return probs[:, eos].tolist()


def eos_frame(sides: list[dict], names: tuple[str, str]) -> pd.DataFrame:
    """The EOS-probability curve of each side's first answer: step k = before generated token k (1-based)."""
    rows = []
    for side, name, where in zip(sides, names, EOS_COLOURS, strict=True):
        new = (side.get("new_ids") or [[]])[0]
        label = f"{where}: {name}"
        rows += [(k + 1, p, label) for k, p in enumerate(eos_probs(side["bundle"], side["ids"], new))]
    frame = pd.DataFrame(rows, columns=["step", EOS_COLUMN, "model"])
    return frame.astype({"step": "int64", EOS_COLUMN: "float64", "model": "str"})


def _interleave(sides: list[dict], s: Settings, max_new: int):
    """One answer on both sides, a token from each in turn; yields the two lists of new ids after every step."""
    streams, new = [], [[], []]
    for side in sides:
        tok = side["bundle"].tokenizer
        streams.append(
            sampling.generate(
                side["bundle"].model, side["ids"], max_new, s.temperature, s.top_k, s.top_p, side["gen"], tok.eos_id
            )
        )
    live = [True, True]
    while any(live):
        for i in (0, 1):
            if live[i]:
                token = next(streams[i], None)
                if token is None:
                    live[i] = False
                else:
                    new[i].append(token)
        yield new
    for side, n in zip(sides, new, strict=True):
        side["done"].append(response_text(side["bundle"].tokenizer, n))
        side.setdefault("new_ids", []).append(list(n))


@common.friendly
def show_prompts(left, right, prompt, chat_left, chat_right, session):
    """The exact strings each model reads (special tokens included) and their token counts."""
    prompt = check_text(prompt, "prompt")
    out = []
    for choice, chat, side in ((left, chat_left, "left"), (right, chat_right, "right")):
        ids, shown = build_prompt(load_side(choice, session, side), prompt, bool(chat))
        out.append(f"{shown}")
        out.append(f"{len(ids)} tokens · {'chat template' if chat else 'raw text'}")
    return out[0], out[2], f"Left: {html.escape(out[1])} · Right: {html.escape(out[3])}"


def demo_prompt(label: str) -> str:
    """The prompt behind an entry of the held-out questions list (the course's question is its own label)."""
    return next((q["prompt"] for q in DEMO if q["label"] == label), COURSE_PROMPT)


def _pair(names: tuple[str, str]):
    def fill():
        return names[0], names[1], looks_like_chat(names[0]), looks_like_chat(names[1])

    return fill


# ------------------------------------------------------------------------------------------------ layout
def _pickers(pair: tuple[str, str]) -> tuple:
    """The two pair buttons and each side's model and chat-template switch."""
    with gr.Row():
        bundled_btn = gr.Button("Bundled pair (offline)", size="sm", elem_id="compare-bundled")
        hub_btn = gr.Button("SmolLM2-135M pair (Hub, online)", size="sm", elem_id="compare-hub")
    sides = []
    with gr.Row(equal_height=False):
        for name, where in zip(pair, ("left", "right"), strict=True):
            with gr.Column(min_width=260, elem_id=f"compare-{where}-col"):
                picker = common.model_picker(f"{where.title()} model", value=name, elem_id=f"compare-{where}-model")
                chat = gr.Checkbox(looks_like_chat(name), label=CHAT_LABEL, elem_id=f"compare-{where}-chat")
            sides += [picker, chat]
    return (bundled_btn, hub_btn, *sides)


def build(ctx: common.TabContext) -> None:
    pair = spaces_support.compare_pair()  # SmolLM2 when a Space preloaded it, else the bundled pair
    with gr.Tab("5 Aligned vs base", id="compare", elem_id="tab-compare"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                common.lesson("compare")
            with gr.Column(scale=3, min_width=340):
                demo = gr.Dropdown(
                    [q["label"] for q in DEMO] + [COURSE_PROMPT],
                    value=DEMO[0]["label"] if DEMO else COURSE_PROMPT,
                    label="Held-out questions (the kind llama-aligned was tuned on, never trained on), "
                    "or the course's question",
                    elem_id="compare-demo",
                )
                prompt = gr.Textbox(
                    DEFAULT_PROMPT, label="Prompt (the user's message)", lines=4, elem_id="compare-prompt"
                )
                bundled_btn, hub_btn, left, chat_left, right, chat_right = _pickers(pair)
                # instructor mode keeps answers per model and seed (the lesson's steps use them)
                temperature, top_k, top_p, max_new, n_answers, seed = sampling_controls(
                    "compare", max_new=96, answers_label="Answers per model", answers_advanced=False
                )
                with gr.Row():
                    go = gr.Button("Generate both", variant="primary", elem_id="compare-generate")
                    stop = gr.Button("Stop", variant="stop", elem_id="compare-stop")
                with gr.Row(equal_height=True):
                    left_out = gr.Textbox(
                        label="Left answers", lines=12, max_lines=30, elem_id="compare-left", buttons=["copy"]
                    )
                    right_out = gr.Textbox(
                        label="Right answers", lines=12, max_lines=30, elem_id="compare-right", buttons=["copy"]
                    )
                status = gr.Markdown(elem_id="compare-status")
                eos_plot = _eos_plot()
                common.plot_legend({f"{w} column's model": c for w, c in EOS_COLOURS.items()}, "compare-eos-legend")
                show = gr.Checkbox(
                    False, label="Show the exact prompt strings (with special tokens)", elem_id="compare-show-prompts"
                )
                with gr.Row(visible=False) as prompt_row:
                    left_prompt = gr.Textbox(label="Left model reads", lines=4, elem_id="compare-left-prompt")
                    right_prompt = gr.Textbox(label="Right model reads", lines=4, elem_id="compare-right-prompt")
                prompt_info = gr.Markdown(visible=True, elem_id="compare-prompt-info")
                share.register(
                    ctx,
                    "compare",
                    {
                        "prompt": prompt,
                        "left": left,
                        "right": right,
                        "chat_left": chat_left,
                        "chat_right": chat_right,
                        "temperature": temperature,
                        "top_k": top_k,
                        "top_p": top_p,
                        "max_new": max_new,
                        "answers": n_answers,
                        "seed": seed,
                    },
                )
                start_tab.next_step(ctx, "compare")  # the path through the tabs

        demo.input(demo_prompt, demo, prompt, api_visibility="private", queue=False)
        for picker, box in ((left, chat_left), (right, chat_right)):
            picker.change(looks_like_chat, picker, box, api_visibility="private", queue=False)
        for btn, names in ((bundled_btn, BUNDLED_PAIR), (hub_btn, HUB_PAIR)):
            btn.click(_pair(names), None, [left, right, chat_left, chat_right], api_visibility="private", queue=False)
        inputs = [
            left,
            right,
            prompt,
            chat_left,
            chat_right,
            temperature,
            top_k,
            top_p,
            max_new,
            n_answers,
            seed,
            ctx.session,
        ]
        event = go.click(
            stream_compare,
            inputs,
            [left_out, right_out, left_prompt, right_prompt, status, eos_plot],
            api_name="compare_generate",
            **common.HEAVY,
        )
        stop.click(None, None, None, cancels=[event], api_visibility="private", queue=False)
        show.change(lambda v: gr.Row(visible=bool(v)), show, prompt_row, api_visibility="private", queue=False)
        show.change(
            _maybe_prompts,
            [show, left, right, prompt, chat_left, chat_right, ctx.session],
            [left_prompt, right_prompt, prompt_info],
            api_name="compare_prompts",
            **common.LIGHT,
        )


def _eos_plot() -> gr.LinePlot:
    return gr.LinePlot(
        x="step",
        y=EOS_COLUMN,
        color="model",
        y_title="p(end-of-sequence)",
        x_title="generated token",
        x_axis_format="d",
        y_axis_format=".2f",
        y_lim=[0, 1],
        label="p(end-of-sequence) before each generated token (first answer): why one model stops",
        height=240,
        buttons=["export", "fullscreen"],
        elem_id="compare-eos-plot",
    )


def _maybe_prompts(show, left, right, prompt, chat_left, chat_right, session):
    if not show:
        return gr.skip(), gr.skip(), ""
    return show_prompts(left, right, prompt, chat_left, chat_right, session)
