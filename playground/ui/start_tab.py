"""The "Start here" tab: the pipeline as one picture, a button per step, and a 45-minute class path."""

from __future__ import annotations

import gradio as gr

from playground import ASSETS
from playground.ui import common, share

STEPS = [  # (tab id, button label, one line on what the learner does there)
    ("tokenize", "1 Tokenize", "Cut text into pieces; train your own tokenizer."),
    ("cross_entropy", "2 Cross-entropy", "Score a real model token by token; break the naive softmax."),
    ("train", "3 Train", "Train a GPT from scratch in seconds; watch loss, samples and attention."),
    ("sample", "4 Sample", "Temperature, top-k, top-p: see the next-token distribution change."),
    ("compare", "5 Aligned vs base", "One prompt through a base model and its aligned twin."),
    ("orpo", "6 ORPO", "Every number of the alignment loss on one example."),
]

CLASS_PATH = """
### A 45-minute class
| minutes | tab | do |
|---|---|---|
| 0-5 | Start here | the picture above: what a language model computes |
| 5-12 | 1 Tokenize | paste a sentence with an emoji; compare two vocabulary sizes |
| 12-20 | 2 Cross-entropy | find the most surprising token; scale the logits until the naive sum overflows |
| 20-30 | 3 Train | start a 30 s burst; watch the loss fall below 5.5 nats and the sample turn into words |
| 30-36 | 4 Sample | temperature 0, 1 and 3 on the same prompt and seed |
| 36-41 | 5 Aligned vs base | ask both models the same question |
| 41-45 | 6 ORPO | take 10 steps on one example and watch the log odds ratio rise |
"""


def build(ctx: common.TabContext) -> None:
    with gr.Tab("Start here", id="start", elem_id="tab-start"):
        # the picture spans the page (its 12-15 px text stays legible); a stage is a link to its tab (page.js)
        svg = (ASSETS / "pipeline.svg").read_text(encoding="utf-8")
        gr.HTML(f"<div class='pg-pipeline'>{svg}</div>", elem_id="start-pipeline")
        with gr.Row(elem_classes=["pg-steps"]):
            for tab_id, label, _hint in STEPS:
                btn = gr.Button(label, size="sm", elem_id=f"start-go-{tab_id}")
                if ctx.tabs is not None:
                    btn.click(_go(tab_id), None, ctx.tabs, api_visibility="private", queue=False)
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                common.lesson("start")
            with gr.Column(scale=3, min_width=340):
                share.presets_picker(ctx)
                gr.Markdown("\n".join(f"- **{label}**: {hint}" for _, label, hint in STEPS))
                gr.Markdown(CLASS_PATH, elem_classes=["pg-class-path"])
                share.register(ctx, "start", {})


def next_step(ctx: common.TabContext, tab_id: str) -> None:
    """A "Next: 2 Cross-entropy ▶" button at the end of a tab: the path through the tabs, one tap away where the
    lesson ends (on a phone the tab bar, wrapped onto three or four rows, is a long scroll up)."""
    ids = [t for t, _, _ in STEPS]
    if tab_id not in ids or ids.index(tab_id) == len(ids) - 1 or ctx.tabs is None:
        return
    nxt, label, _ = STEPS[ids.index(tab_id) + 1]
    btn = gr.Button(f"Next: {label} ▶", size="sm", elem_id=f"{tab_id}-next", elem_classes=["pg-next"])
    btn.click(_go(nxt), None, ctx.tabs, api_visibility="private", queue=False)


def _go(tab_id: str):
    def go():
        return gr.Tabs(selected=tab_id)

    return go
