"""The Sample tab: temperature, top-k and top-p made visible, with streaming generation.

Two instruments over `playground.sampling`:
- Generate: N answers streamed token by token (`sampling.generate`, KV cache, one seeded torch.Generator), Stop.
- Step through: one token per click (`sampling.sample_step`), showing the next-token distribution at each stage of
  the pipeline (raw softmax -> temperature -> top-k -> top-p) as bars with each stage's entropy, the drawn token
  highlighted. With the same seed, stepping draws the same tokens as the first streamed answer.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

import gradio as gr
import torch

from playground import models, sampling
from playground.limits import LIMITS, check_float, check_int, check_text
from playground.ui import common, share, start_tab

DEFAULT_PROMPT = "Once upon a time"
MAX_TEMPERATURE = 5.0
N_BARS = 10  # candidates shown per stage
BAR_COLORS = ["#6366f1", "#0ea5e9", "#10b981", "#f59e0b"]  # one per stage: raw, temperature, top-k, top-p


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Settings:
    """The sampling knobs as the UI sends them, checked once (ValueError with the bad value)."""

    temperature: float
    top_k: int | None
    top_p: float
    seed: int

    @classmethod
    def from_ui(cls, temperature, top_k, top_p, seed) -> Settings:
        temperature = check_float(temperature, "Temperature", 0.0, MAX_TEMPERATURE)
        top_k = check_int(top_k if top_k not in (None, "") else 0, "top-k", 0, 10_000_000) or None
        top_p = check_float(top_p, "top-p", 0.0, 1.0)
        if top_p == 0.0:
            raise ValueError("top-p must be above 0 (it keeps the smallest set of tokens reaching that mass), got 0")
        seed = check_int(seed if seed not in (None, "") else 0, "Seed", 0, 2**32 - 1)
        sampling.check_settings(temperature, top_k, top_p)
        return cls(temperature, top_k, top_p, seed)

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids; an empty encoding starts from bos (as the Train tab's samples do)."""
    ids = tokenizer.encode(prompt)
    if not ids and tokenizer.bos_id is not None:
        ids = [tokenizer.bos_id]
    return ids


def crop_note(n_dropped: int, kept: int) -> str:
    if not n_dropped:
        return ""
    return f" The prompt was longer than the model's context: its first {n_dropped} tokens were dropped, {kept} kept."


def answer_text(tokenizer, prompt: list[int], new: list[int]) -> str:
    """Prompt + continuation decoded together (so the joining space is right), eos left out of the text."""
    if new and new[-1] == tokenizer.eos_id:
        new = new[:-1]
    return tokenizer.decode(prompt + new)


# ------------------------------------------------------------------------------------------ streaming
SLOW_SECONDS = 0.15  # slow motion: the pause after each streamed token


def _per_token(args: dict) -> float:
    """Seconds the generated tokens may take on a ZeroGPU lease: decoding, plus the slow-motion pauses if chosen."""
    each = 0.03 + (SLOW_SECONDS if args.get("slow") is True else 0.0)
    return each * common.gpu_seconds(args, "max_new", 64) * common.gpu_seconds(args, "n_answers", 1)


class Throttle:
    """True at most every `interval` seconds (and always the first time): each streamed update costs the server
    and the browser a few tens of ms on a busy CPU, so a fast model sends a handful of tokens per update."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.last = interval, None

    def ready(self) -> bool:
        now = time.perf_counter()
        if self.last is None or now - self.last >= self.interval:
            self.last = now
            return True
        return False


@common.friendly
@common.gpu(duration=lambda a: 10 + _per_token(a))
def stream_answers(choice, prompt, temperature, top_k, top_p, max_new, n_answers, seed, session, slow=False):
    """Yield (answers text, status markdown) after every token, for every answer in turn. In slow motion every
    token is its own screen update, SLOW_SECONDS apart, so the learner sees the text grow token by token."""
    bundle = common.resolve_bundle(choice, session)
    prompt = check_text(prompt, "prompt")
    s = Settings.from_ui(temperature, top_k, top_p, seed)
    max_new = check_int(max_new, "Max new tokens", 1, LIMITS.max_new_tokens)
    n_answers = check_int(n_answers, "Number of answers", 1, LIMITS.max_answers)
    tok, model = bundle.tokenizer, bundle.model
    ids, dropped = sampling.crop_prompt(prompt_ids(tok, prompt), models.context_length(model))
    gen = s.generator()  # one generator for all answers: answer 2 continues the random stream of answer 1
    done: list[str] = []
    t0, n_tokens, first, throttle = time.perf_counter(), 0, None, Throttle(0.0 if slow else 0.05)
    for a in range(n_answers):
        new: list[int] = []
        for token in sampling.generate(model, ids, max_new, s.temperature, s.top_k, s.top_p, gen, tok.eos_id):
            new.append(token)
            n_tokens += 1
            first = first or time.perf_counter() - t0
            if not throttle.ready():
                continue
            text = "\n\n".join(done + [f"── answer {a + 1} ──\n{answer_text(tok, ids, new)}"])
            yield text, f"Answer {a + 1} of {n_answers}: {len(new)} tokens…"
            if slow:
                time.sleep(SLOW_SECONDS)
        ended = " (ended with end-of-sequence)" if new and new[-1] == tok.eos_id else ""
        done.append(f"── answer {a + 1} ──{ended}\n{answer_text(tok, ids, new)}")
    took = time.perf_counter() - t0
    yield (
        "\n\n".join(done),
        (
            f"Done: {n_answers} answer(s), {n_tokens} tokens in {took:.2f} s "
            f"({n_tokens / max(took, 1e-9):.0f} tokens/s; first token after {first or 0:.2f} s)."
            f"{crop_note(dropped, len(ids))}"
        ),
    )


# ------------------------------------------------------------------------------------------ stepping
def _piece(tokenizer, i: int) -> str:
    return tokenizer.id_to_piece(int(i)) or f"#{i}"


def bars_html(stages: list[sampling.Stage], tokenizer, drawn: int | None = None) -> str:
    """The stages side by side as bar lists over the same top candidates (by raw probability), drawn token lit."""
    raw = stages[0].probs
    ids = raw.topk(min(N_BARS, raw.numel())).indices.tolist()
    if drawn is not None and drawn not in ids:
        ids.append(drawn)  # a token drawn from outside the raw top 10 still gets its row
    scale = max(max(stage.top(ids)) for stage in stages)  # one scale for all panels, so bar lengths compare
    panels = [
        _panel(stage, ids, tokenizer, drawn, color, scale) for stage, color in zip(stages, BAR_COLORS, strict=False)
    ]
    return "<div class='pg-dist' style='display:flex;gap:10px;flex-wrap:wrap'>" + "".join(panels) + "</div>"


ROW = "display:flex;align-items:center;gap:6px;"
LABEL = "width:7em;overflow:hidden;white-space:pre"
TRACK = "flex:1;background:#e5e7eb;height:12px;border-radius:3px"
VALUE = "min-width:4.8em;white-space:nowrap;text-align:right;font-variant-numeric:tabular-nums"
PANEL = "flex:1;min-width:230px;border:1px solid #e5e7eb;border-radius:8px;padding:6px"


def _panel(stage: sampling.Stage, ids: list[int], tokenizer, drawn: int | None, color: str, scale: float) -> str:
    rows = []
    for i, p in zip(ids, stage.top(ids), strict=True):
        lit = "background:#fde68a;font-weight:bold;" if i == drawn else ""  # .pg-lit: dark text in both themes
        mark = " <span class='pg-drawn'>◀ drawn</span>" if i == drawn else ""
        bar = f"width:{100 * p / scale:.2f}%;background:{color};height:12px;border-radius:3px"
        rows.append(
            f"<div class='pg-bar-row{' pg-lit' if lit else ''}' style='{ROW}{lit}'>"
            f"<code style='{LABEL}'>{html.escape(_piece(tokenizer, i))}</code>"
            f"<div style='{TRACK}'><div class='pg-bar' style='{bar}'></div></div>"
            f"<span style='{VALUE}'>{p:.3f}{mark}</span></div>"
        )
    return (
        f"<div class='pg-stage' style='{PANEL}'><div style='font-weight:bold'>{html.escape(stage.name)}</div>"
        f"<div class='pg-entropy' style='font-size:0.85em;opacity:0.8'>entropy {stage.entropy:.3f} nats · "
        f"{stage.kept:,} of {stage.probs.numel():,} tokens kept</div>" + "".join(rows) + "</div>"
    )


def _steps_html(tokenizer, ids: list[int], n_prompt: int, history: list[tuple[int, float]]) -> str:
    """The text so far, then the prompt and each drawn token as a chip with its probability."""
    text = html.escape(answer_text(tokenizer, ids[:n_prompt], ids[n_prompt:]))
    prompt = html.escape(tokenizer.decode(ids[:n_prompt]))
    chips = "".join(
        f"<span class='pg-tok' style='background:#fde68a' title='p = {p:.3f}'>{html.escape(_piece(tokenizer, t))}"
        f"<sub>{p:.2f}</sub></span>"
        for t, p in history
    )
    return (
        f"<div class='pg-step-decoded' style='white-space:pre-wrap'>{text}</div>"
        f"<div class='pg-tokens pg-step-text'><span>{prompt}</span> {chips}</div>"
    )


@common.friendly
@common.gpu(duration=10)
def next_token(choice, prompt, temperature, top_k, top_p, seed, state, session):
    """Draw one more token; return (bars html, text so far html, caption, new state)."""
    bundle = common.resolve_bundle(choice, session)
    prompt = check_text(prompt, "prompt")
    s = Settings.from_ui(temperature, top_k, top_p, seed)
    tok, model = bundle.tokenizer, bundle.model
    key = [str(choice), prompt, s.temperature, s.top_k, s.top_p, s.seed]
    if not state or state.get("key") != key:  # new prompt or settings: start over from the prompt
        ids, _ = sampling.crop_prompt(prompt_ids(tok, prompt), models.context_length(model))
        state = {"key": key, "ids": ids, "n_prompt": len(ids), "rng": s.generator().get_state(), "history": []}
    if state["history"] and state["history"][-1][0] == tok.eos_id:
        raise ValueError("The model ended the text (end-of-sequence). Press Reset to start again.")
    if len(state["history"]) >= LIMITS.max_new_tokens:
        raise ValueError(f"{LIMITS.max_new_tokens} tokens stepped: that is the limit here. Press Reset.")
    gen = torch.Generator()
    gen.set_state(state["rng"])
    # one token from everything so far (the last `context` tokens), drawn as `generate` draws it
    step = next(sampling.generate_steps(model, state["ids"], 1, s.temperature, s.top_k, s.top_p, gen))
    state = {
        **state,
        "ids": state["ids"] + [step.token_id],
        "rng": gen.get_state(),
        "history": state["history"] + [(step.token_id, step.prob)],
    }
    caption = (
        f"Step {len(state['history'])}: drew **{html.escape(_piece(tok, step.token_id))}** (id {step.token_id}) "
        f"with probability **{step.prob:.3f}** after the filters ({step.raw_prob:.3g} under the raw softmax; "
        f"the model's #{step.rank + 1} choice)."
        + (" That is the end-of-sequence token: the text is over." if step.token_id == tok.eos_id else "")
    )
    return (
        bars_html(step.stages, tok, step.token_id),
        _steps_html(tok, state["ids"], state["n_prompt"], state["history"]),
        caption,
        state,
    )


def reset_steps():
    return "", "", "Press **Next token** to draw the first token.", None


# ------------------------------------------------------------------------------------------------ layout
def sampling_controls(prefix: str, max_new: int = 64, answers_label: str = "Answers", answers_advanced: bool = True):
    """The sampling controls the Sample and the Aligned-vs-base tabs share, with the same ranges and help:
    (temperature, top_k, top_p, max_new, n_answers, seed), elem ids `<prefix>-temperature` and so on. Instructor
    mode hides what no lesson step uses (pg-advanced), never the seed."""
    with gr.Row():
        temperature = gr.Slider(
            0.0, MAX_TEMPERATURE, value=1.0, step=0.05, label="Temperature",
            info="0 = greedy (always the most likely token)", elem_id=f"{prefix}-temperature",
        )  # fmt: skip
        top_k = gr.Number(
            50, label="top-k", precision=0, minimum=0, elem_id=f"{prefix}-topk",
            info="keep the k most likely tokens; 0 = off",
        )  # fmt: skip
        top_p = gr.Slider(
            0.01, 1.0, value=1.0, step=0.01, label="top-p", elem_id=f"{prefix}-topp",
            info="keep the smallest set reaching this mass; 1 = off",
        )  # fmt: skip
    with gr.Row():
        max_new = gr.Slider(
            1, LIMITS.max_new_tokens, value=max_new, step=1, label="Max new tokens", elem_id=f"{prefix}-max-new",
            elem_classes=["pg-advanced"],
        )  # fmt: skip
        n_answers = gr.Slider(
            1, LIMITS.max_answers, value=1, step=1, label=answers_label, elem_id=f"{prefix}-answers",
            elem_classes=["pg-advanced"] if answers_advanced else None,
        )  # fmt: skip
        seed = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id=f"{prefix}-seed")
    return temperature, top_k, top_p, max_new, n_answers, seed


def build(ctx: common.TabContext) -> None:
    with gr.Tab("4 Sample", id="sample", elem_id="tab-sample"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                common.lesson("sample")
            with gr.Column(scale=3, min_width=340):
                model = common.model_picker(elem_id="sample-model")
                prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", lines=2, elem_id="sample-prompt")
                temperature, top_k, top_p, max_new, n_answers, seed = sampling_controls("sample")
                with gr.Row():
                    go = gr.Button("Generate", variant="primary", elem_id="sample-generate")
                    stop = gr.Button("Stop", variant="stop", elem_id="sample-stop")
                    slow = gr.Checkbox(
                        False, label=f"Slow motion (a token every {SLOW_SECONDS} s)", elem_id="sample-slow"
                    )
                output = gr.Textbox(
                    label="Answers (streamed token by token)",
                    lines=10,
                    max_lines=30,
                    elem_id="sample-output",
                    buttons=["copy"],
                )
                status = gr.Markdown(elem_id="sample-status")

                gr.Markdown("### Step through: the next-token distribution, one token at a time")
                with gr.Row():
                    step_btn = gr.Button("Next token ▶", variant="secondary", elem_id="sample-step")
                    reset_btn = gr.Button("Reset", size="sm", elem_id="sample-reset")
                step_caption = gr.Markdown(
                    "Press **Next token** to draw the first token.", elem_id="sample-step-caption"
                )
                step_text = gr.HTML(elem_id="sample-step-text")
                bars = gr.HTML(elem_id="sample-dist")
                step_state = gr.State(None)
                share.register(
                    ctx,
                    "sample",
                    {
                        "model": model,
                        "prompt": prompt,
                        "temperature": temperature,
                        "top_k": top_k,
                        "top_p": top_p,
                        "max_new": max_new,
                        "answers": n_answers,
                        "seed": seed,
                    },
                )
                start_tab.next_step(ctx, "sample")  # the path through the tabs

        inputs = [model, prompt, temperature, top_k, top_p, max_new, n_answers, seed, ctx.session, slow]
        event = go.click(stream_answers, inputs, [output, status], api_name="sample_generate", **common.HEAVY)
        stop.click(None, None, None, cancels=[event], api_visibility="private", queue=False)
        step_inputs = [model, prompt, temperature, top_k, top_p, seed, step_state, ctx.session]
        step_btn.click(
            next_token, step_inputs, [bars, step_text, step_caption, step_state], api_name="sample_step", **common.LIGHT
        )
        reset_btn.click(
            reset_steps, None, [bars, step_text, step_caption, step_state], api_name="sample_reset", **common.LIGHT
        )
