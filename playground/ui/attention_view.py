"""Interactive attention maps for the Train tab (HTML, no plotting library).

`view_html(maps, tokens, step, layer)` gives one block: a grid of every layer x head map (and each layer's head
average) as small clickable thumbnails, and the chosen map large, with the prompt's tokens along both axes in the
page's own font, a colour scale, and a readout that names the query token, the key token and the weight under the
pointer (or the keyboard cursor: the map takes focus and arrow keys move over it). assets/page.js does the hovering
and the switching: every map's weights travel in its `data-w` attribute (weights x 10^4 as integers, row-major).

`reading_html(maps, tokens)` says in words what each head mostly does (attends to itself, to the previous token,
to the first token, or spreads out), from the same weights.

Colour = sqrt(weight) on one scale for every map (a weight is a probability, 0..1): the square root lifts the
small weights of long rows (a row of n tokens averages 1/n) enough to see their pattern, and a shared scale keeps
heads comparable. The masked future (key after query) is grey.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json

import numpy as np
from PIL import Image

VIRIDIS = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]  # dark blue -> yellow
MASKED = (214, 214, 214)
SCALE_TICKS = (0.0, 0.01, 0.05, 0.25, 0.5, 1.0)  # weights marked on the colour bar (placed at sqrt(weight))
W_SCALE = 10_000  # data-w holds round(weight * W_SCALE)


def colormap(x: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB uint8 along the VIRIDIS anchors (linear between them)."""
    anchors = np.array(VIRIDIS, dtype=np.float64)
    pos = np.clip(x, 0, 1) * (len(anchors) - 1)
    i = np.minimum(pos.astype(int), len(anchors) - 2)
    frac = (pos - i)[..., None]
    return (anchors[i] * (1 - frac) + anchors[i + 1] * frac).astype(np.uint8)


def map_png(weights: np.ndarray) -> str:
    """One (T, T) map as a data-URI PNG of T x T pixels (the browser scales it up without smoothing)."""
    t = weights.shape[0]
    rgb = colormap(np.sqrt(np.clip(weights, 0, 1)))
    rgb[np.triu(np.ones((t, t), dtype=bool), k=1)] = MASKED
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def token_label(piece: str) -> str:
    """A vocabulary piece as a readable label: SentencePiece's word-start mark as a visible space, newline as ↵."""
    return (piece or "").replace("\u2581", "␣").replace("\n", "↵").replace("\t", "⇥")[:16] or "∅"


def _all_maps(maps: np.ndarray) -> list[tuple[int, int | None, np.ndarray]]:
    """(layer, head or None for the average, weights) for every thumbnail, layer by layer."""
    out = []
    for layer in range(maps.shape[0]):
        out += [(layer, h, maps[layer, h]) for h in range(maps.shape[1])]
        out.append((layer, None, maps[layer].mean(0)))
    return out


def _name(layer: int, head: int | None) -> str:
    return f"Layer {layer + 1}, " + (f"head {head + 1}" if head is not None else "average of the heads")


def view_html(maps, tokens: list[str], step: int, layer: int) -> str:
    """The whole interactive view; `maps` (L, nh, T, T) attention weights, `tokens` the T query/key labels,
    `layer` (1-based) the layer whose head average is shown large first."""
    maps = np.asarray(maps, dtype=np.float64)
    n_layers, n_heads, t, _ = maps.shape
    if len(tokens) != t:
        raise ValueError(f"{len(tokens)} token labels for maps of {t} tokens")
    key = "pga" + hashlib.sha1(maps.tobytes() + json.dumps(tokens).encode()).hexdigest()[:10]
    chosen = min(max(int(layer), 1), n_layers) - 1
    labels = [token_label(p) for p in tokens]
    thumbs, figures = [], []
    for li, head, w in _all_maps(maps):
        ident = f"{key}-l{li}-" + (f"h{head}" if head is not None else "avg")
        src, on = map_png(w), (li == chosen and head is None)
        thumbs.append((li, head, ident, src, on))
        figures.append(_figure(ident, w, labels, src, f"{_name(li, head)} · step {step}", on))
    return (
        f"<div class='pg-attn' id='{key}'>"
        f"{_thumb_grid(thumbs, n_layers, n_heads)}"
        f"<div class='pg-attn-maps'>{''.join(figures)}{scale_html()}</div></div>"
    )


def _thumb_grid(thumbs, n_layers: int, n_heads: int) -> str:
    head_row = "".join(f"<th scope='col'>head {h + 1}</th>" for h in range(n_heads)) + "<th scope='col'>average</th>"
    rows = []
    for li in range(n_layers):
        cells = "".join(
            f"<td><button type='button' class='pg-attn-thumb' data-target='{ident}' aria-pressed='{str(on).lower()}' "
            f"aria-label='Show {_name(layer, head)}'><img src='{src}' alt=''></button></td>"
            for layer, head, ident, src, on in thumbs
            if layer == li
        )
        rows.append(f"<tr><th scope='row'>layer {li + 1}</th>{cells}</tr>")
    return (
        "<table class='pg-attn-grid'><caption>Every layer and head: click one to see it large</caption>"
        f"<thead><tr><td></td>{head_row}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _figure(ident: str, w: np.ndarray, labels: list[str], src: str, title: str, on: bool) -> str:
    t = len(labels)
    cell = max(12, min(26, 540 // t))
    data_w = ",".join(str(int(v)) for v in np.rint(np.clip(w, 0, 1) * W_SCALE).astype(np.int64).ravel())
    cols = "".join(f"<span>{html.escape(p)}</span>" for p in labels)
    rows = "".join(f"<span>{html.escape(p)}</span>" for p in labels)
    hidden = "" if on else " hidden"
    return (
        f"<figure class='pg-attn-map' id='{ident}' data-t='{t}' data-w='{data_w}' "
        f"data-tokens='{html.escape(json.dumps(labels), quote=True)}' style='--cell:{cell}px;--n:{t}'{hidden}>"
        f"<figcaption>{html.escape(title)}</figcaption>"
        "<div class='pg-attn-body'>"
        "<div class='pg-attn-corner'>query ↓ · key →</div>"
        f"<div class='pg-attn-cols' aria-hidden='true'>{cols}</div>"
        f"<div class='pg-attn-rows' aria-hidden='true'>{rows}</div>"
        f"<div class='pg-attn-cells' tabindex='0' role='img' aria-label='{html.escape(title, quote=True)}: "
        "attention weights, rows are queries, columns are keys; use the arrow keys to read a cell'>"
        f"<img src='{src}' alt=''><div class='pg-attn-hl' hidden></div></div>"
        "</div>"
        "<p class='pg-attn-readout' aria-live='polite'>Hover a cell: which token (row) looks at which (column), "
        "and how much.</p></figure>"
    )


def scale_html() -> str:
    """The colour bar, 0 to 1 on the square-root scale the maps use, with a few weights marked."""
    colours = colormap(np.linspace(0, 1, 9))
    stops = ", ".join(f"rgb({r},{g},{b}) {100 * i / 8:.1f}%" for i, (r, g, b) in enumerate(colours.tolist()))
    ticks = "".join(f"<span style='left:{100 * np.sqrt(v):.1f}%'>{v:g}</span>" for v in SCALE_TICKS)
    return (
        "<div class='pg-attn-scale' aria-label='colour scale: weight 0 (dark blue) to 1 (yellow), square-root spaced'>"
        "<div class='pg-attn-scale-title'>attention weight (grey: a future token, masked)</div>"
        f"<div class='pg-attn-bar' style='background:linear-gradient(90deg, {stops})'></div>"
        f"<div class='pg-attn-ticks'>{ticks}</div></div>"
    )


# ------------------------------------------------------------------------------------------------ reading
def head_pattern(w: np.ndarray) -> tuple[str, float]:
    """What one (T, T) map mostly does: the kind with the largest mean share of each query's weight, over
    queries 2..T (the first query can only look at itself). Kinds: itself, the previous token, the first token;
    'spread out' when none of them gets half."""
    w = np.asarray(w, dtype=np.float64)
    t = w.shape[0]
    if t < 2:
        return "itself", 1.0
    q = np.arange(1, t)
    shares = {
        "itself": float(w[q, q].mean()),
        "the previous token": float(w[q, q - 1].mean()),
        "the first token": float(w[q, 0].mean()),
    }
    kind = max(shares, key=shares.get)
    return (kind, shares[kind]) if shares[kind] >= 0.5 else ("spread out", shares[kind])


def reading_html(maps) -> str:
    """One line per head: what it mostly attends to, with the average share of weight that goes there."""
    maps = np.asarray(maps, dtype=np.float64)
    items = []
    for li in range(maps.shape[0]):
        parts = []
        for h in range(maps.shape[1]):
            kind, share = head_pattern(maps[li, h])
            what = f"looks at {kind} ({100 * share:.0f}%)" if kind != "spread out" else "spreads out"
            parts.append(f"<span class='pg-attn-kind' data-kind='{kind}'>head {h + 1} {what}</span>")
        items.append(f"<li><b>Layer {li + 1}</b>: {'; '.join(parts)}</li>")
    return (
        "<div class='pg-attn-reading'><p>What each head mostly does (average share of a query's weight, "
        "queries 2 onwards):</p>"
        f"<ul>{''.join(items)}</ul></div>"
    )
