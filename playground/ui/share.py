"""Shareable links, instructor mode and demo presets.

A link carries the tab and that tab's inputs in its query string, e.g.
`/?tab=sample&prompt=Once+upon+a+time&temperature=0&seed=7`, so opening it reproduces what the sender saw.

- Each tab calls `register(ctx, "<tab id>", {"prompt": prompt_box, ...})` once, inside its controls column: that
  records which components the link carries and adds a "Copy link" button. The button builds the URL in the
  browser (`js=`: no server round trip), copies it to the clipboard and also shows it in a small textbox, so it
  works where the page has no clipboard permission.
- `wire(ctx)`, called once at the end of `build_app`, adds one `demo.load` that reads `request.query_params` and
  returns an update for every registered component plus `gr.Tabs(selected=...)`. Nothing from the URL is trusted:
  numbers are clamped to the component's range, choices must be among the component's choices (model pickers also
  take a Hub id, never a local path), text is capped, and a bad value is skipped with a warning.
- Instructor mode (`?instructor=1` or the header toggle) puts `pg-instructor` on `<body>`: larger type, and every
  component with `elem_classes=["pg-advanced"]` hidden by assets/style.css.
- Demo presets (a dropdown on the Start tab) are link query strings: choosing one fills that tab and switches to it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any
from urllib.parse import parse_qsl

import gradio as gr

from playground.hub import is_hub_id
from playground.ui import common

log = logging.getLogger(__name__)

TAB_IDS = ("start", "tokenize", "cross_entropy", "train", "sample", "compare", "orpo")
LINK_TEXT_CHARS = 4000  # text carried in a link (URLs much longer than this break in mail clients and chats)
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")

# Demo presets for a live class: label -> the query string a link to it would carry.
PRESETS = {
    "Tokenize: an emoji and four scripts": "tab=tokenize&text=Tokenization isn't magic! 🚀 Café, 東京, שלום, Привет.",
    "Cross-entropy: break the naive softmax (logits x 10^4)": "tab=cross_entropy&scale=4&dtype=float32",
    "Train: a 30-second burst of the tiny GPT": "tab=train&preset=tiny&arch=gpt&mode=seconds&amount=30",
    "Sample: greedy (temperature 0)": "tab=sample&prompt=Once upon a time&temperature=0&top_k=0&seed=0",
    "Sample: hot (temperature 2, no top-k)": "tab=sample&prompt=Once upon a time&temperature=2&top_k=0&seed=0",
    "Aligned vs base: ask both a question": "tab=compare&prompt=What is a food recipe using apple?&temperature=0.7"
    "&seed=0",
    "ORPO: lambda 0.5, 10 steps": "tab=orpo&lam=0.5&n=10",
}
NO_PRESET = "(choose a demo)"


# ---------------------------------------------------------------------------------------------- registry
def register(ctx: common.TabContext, tab: str, components: dict[str, gr.components.Component]) -> gr.Button:
    """Record the components a link to `tab` carries (URL key -> component) and add the Copy link button here."""
    if tab not in TAB_IDS:
        raise ValueError(f"unknown tab id {tab!r}; expected one of {TAB_IDS}")
    for key in components:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key) or key in ("tab", "instructor"):
            raise ValueError(f"link key {key!r} must be lower_snake_case and not 'tab' or 'instructor'")
    ctx.shared[tab] = dict(components)
    with gr.Row(elem_classes=["pg-share"]):
        btn = gr.Button("Copy link", size="sm", scale=0, min_width=120, elem_id=f"{tab}-copy-link")
        box = gr.Textbox(
            show_label=False,
            placeholder="a link to this tab with these inputs appears here",
            max_lines=1,
            scale=4,
            elem_id=f"{tab}-link",
            elem_classes=["pg-link"],
        )
    btn.click(None, list(components.values()), box, js=_copy_js(tab, list(components)), api_visibility="private")
    return btn


def _copy_js(tab: str, keys: list[str]) -> str:
    """Browser-side: the page's URL with `tab` and these inputs, copied to the clipboard and returned."""
    return f"""(...vals) => {{
  const keys = {json.dumps(keys)};
  const q = new URLSearchParams();
  q.set("tab", {json.dumps(tab)});
  keys.forEach((k, i) => {{
    let v = vals[i];
    if (v === null || v === undefined || v === "") return;
    v = String(v);
    q.set(k, v.length > {LINK_TEXT_CHARS} ? v.slice(0, {LINK_TEXT_CHARS}) : v);
  }});
  if (document.body.classList.contains("pg-instructor")) q.set("instructor", "1");
  const theme = new URLSearchParams(window.location.search).get("__theme");
  if (theme) q.set("__theme", theme);
  const url = window.location.origin + window.location.pathname + "?" + q.toString();
  try {{ navigator.clipboard.writeText(url).catch(() => {{}}); }} catch (e) {{}}
  return url;
}}"""


# ----------------------------------------------------------------------------------------------- values
def coerce(component: gr.components.Component, raw: str) -> Any:
    """The value a URL string means for `component`, clamped / checked; ValueError when it cannot be used."""
    if isinstance(component, gr.Checkbox):
        low = raw.strip().lower()
        if low not in TRUE + FALSE:
            raise ValueError(f"not a yes/no value: {raw!r}")
        return low in TRUE
    if isinstance(component, (gr.Slider, gr.Number)):
        return _number(component, raw)
    if isinstance(component, (gr.Dropdown, gr.Radio)):
        return _choice(component, raw)
    if isinstance(component, gr.Textbox):
        return raw[:LINK_TEXT_CHARS]
    raise ValueError(f"a {type(component).__name__} cannot be restored from a link")


def _number(component, raw: str) -> float | int:
    try:
        x = float(raw)
    except ValueError:
        raise ValueError(f"not a number: {raw!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {raw!r}")
    lo, hi = getattr(component, "minimum", None), getattr(component, "maximum", None)
    x = max(x, lo) if lo is not None else x
    x = min(x, hi) if hi is not None else x
    if isinstance(component, gr.Slider) and component.step:  # onto the slider's grid, as a drag would put it
        x = min(hi, lo + round((x - lo) / component.step) * component.step)
        x = round(x, 10)
    if getattr(component, "precision", None) == 0 or (isinstance(component, gr.Slider) and float(x).is_integer()):
        return int(round(x))
    return x


def _choice(component, raw: str) -> str:
    values = [c[1] if isinstance(c, (tuple, list)) else c for c in (component.choices or [])]
    if raw in values:
        return raw
    # a model picker also takes a Hub id (loaded only when the learner presses a button), never a local path
    if getattr(component, "allow_custom_value", False) and is_hub_id(raw):
        return raw
    raise ValueError(f"{raw!r} is not one of {values}")


def updates_for(ctx: common.TabContext, params: dict[str, str]) -> tuple[list, list[str]]:
    """Updates for [tabs, instructor toggle, *every registered component] from query params; plus warnings."""
    tab = params.get("tab", "")
    out: list = [gr.Tabs(selected=tab) if tab in TAB_IDS and ctx.tabs is not None else gr.skip()]
    flag = params.get("instructor")
    out.append(flag.strip().lower() in TRUE if flag is not None else gr.skip())
    problems = []
    for tab_id, comps in ctx.shared.items():
        for key, comp in comps.items():
            raw = params.get(key) if tab_id == tab else None  # only the linked tab's keys: `prompt` is in several
            if raw is None:
                out.append(gr.skip())
                continue
            try:
                out.append(coerce(comp, raw))
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
                out.append(gr.skip())
    return out, problems


def _outputs(ctx: common.TabContext) -> list:
    comps = [c for tab in ctx.shared.values() for c in tab.values()]
    return [ctx.tabs if ctx.tabs is not None else gr.State(), ctx.instructor or gr.State(), *comps]


# ------------------------------------------------------------------------------------------------ wiring
def instructor_toggle() -> gr.Checkbox:
    """The header's instructor-mode switch (its value is restored from `?instructor=1`)."""
    return gr.Checkbox(
        False,
        label="Instructor mode: larger type, advanced controls hidden",
        container=False,
        elem_id="pg-instructor-toggle",
        elem_classes=["pg-instructor-toggle"],
    )


INSTRUCTOR_JS = "(on) => { document.body.classList.toggle('pg-instructor', !!on); return on; }"


def presets_picker(ctx: common.TabContext) -> gr.Dropdown:
    """A dropdown of live-demo presets (wired in `wire`, once every tab has registered its inputs)."""
    ctx.presets = gr.Dropdown(
        [NO_PRESET, *PRESETS], value=NO_PRESET, label="Demo presets (fill a tab and open it)", elem_id="start-presets"
    )
    return ctx.presets


def wire(ctx: common.TabContext) -> None:
    """One load event restoring a shared link; the instructor toggle; the presets."""
    outputs = _outputs(ctx)

    def restore(request: gr.Request):
        params = dict(request.query_params) if request is not None else {}
        out, problems = updates_for(ctx, params)
        if problems:
            log.info("link values ignored: %s", problems)
            gr.Warning("Some values in this link were ignored: " + "; ".join(problems)[:300])
        return out

    def apply_preset(label: str):
        if label not in PRESETS:
            return [gr.skip()] * len(outputs)
        return updates_for(ctx, dict(parse_qsl(PRESETS[label])))[0]

    ctx.demo.load(restore, None, outputs, api_name="restore_link", queue=False)
    if ctx.instructor is not None:
        ctx.instructor.change(None, ctx.instructor, None, js=INSTRUCTOR_JS, api_visibility="private")
    if ctx.presets is not None:
        ctx.presets.change(apply_preset, ctx.presets, outputs, api_name="apply_preset", queue=False)
